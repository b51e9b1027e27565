import test from 'ava';
import { extractUsage, UsageTap } from '../../gateway/proxy/usage-tap.js';

const CHAT_USAGE = '"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}';

test('chat completions: the usage at the end of the body', (t) => {
  const body = `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],${CHAT_USAGE}}`;
  t.deepEqual(extractUsage(body), { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });
});

test('chat completions with details: nested objects inside usage are skipped over', (t) => {
  const body = '{"usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":2,"accepted_prediction_tokens":0}}}';
  t.deepEqual(extractUsage(body), { prompt_tokens: 20, completion_tokens: 5, total_tokens: 25 });
});

test('responses API: input and output tokens, in the body and in the response.completed event', (t) => {
  const usage = '"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}';
  t.deepEqual(extractUsage(`{"id":"resp_1","object":"response","output":[],${usage}}`), { prompt_tokens: 36, completion_tokens: 87, total_tokens: 123 });
  const stream = [
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n',
    `event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1","status":"completed",${usage}}}\n\n`,
  ].join('');
  t.deepEqual(extractUsage(stream), { prompt_tokens: 36, completion_tokens: 87, total_tokens: 123 });
});

test('a missing total is the sum; embeddings have prompt tokens only', (t) => {
  t.deepEqual(extractUsage('{"usage":{"prompt_tokens":7,"completion_tokens":2}}'), { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 });
  t.deepEqual(extractUsage('{"object":"list","data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}'), { prompt_tokens: 8, completion_tokens: null, total_tokens: 8 });
  t.deepEqual(extractUsage('{"usage":{"prompt_tokens":8}}'), { prompt_tokens: 8, completion_tokens: null, total_tokens: 8 });
});

test('braces and escaped quotes inside strings do not end the usage object early', (t) => {
  const body = String.raw`{"usage":{"note":"a \"}\" b {{ \\","prompt_tokens":1,"tag":"}","completion_tokens":2,"total_tokens":3}}`;
  t.deepEqual(extractUsage(body), { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
});

test('content that only mentions usage (escaped, inside a string) is not taken for it', (t) => {
  const body = String.raw`{"choices":[{"message":{"content":"say \"usage\":{\"prompt_tokens\":999} please"}}],"usage":{"prompt_tokens":4,"completion_tokens":5,"total_tokens":9}}`;
  t.deepEqual(extractUsage(body), { prompt_tokens: 4, completion_tokens: 5, total_tokens: 9 });
});

test('the last usage wins: "usage":null on every chunk and usage on the final one', (t) => {
  const stream = [
    'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"}}],"usage":null}\n\n',
    'data: {"id":"c","choices":[{"index":0,"delta":{}}],"usage":null}\n\n',
    'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n',
    'data: {"id":"c","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}\n\n',
    'data: [DONE]\n\n',
  ].join('');
  t.deepEqual(extractUsage(stream), { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
});

test('truncated text: a usage object cut off is no usage, and one that is whole is found after a cut head', (t) => {
  const body = `{"choices":[],${CHAT_USAGE}}`;
  const at = body.indexOf('"completion_tokens"');
  t.is(extractUsage(body.slice(0, at)), null);
  t.is(extractUsage(body.slice(0, body.length - 2)), null, 'the closing brace of usage is missing');
  t.deepEqual(extractUsage(body.slice(0, body.length - 1)), { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 }, 'only the outer brace is missing');
  t.deepEqual(extractUsage(`ntent":"tail of a long answer"}}],${CHAT_USAGE}}`), { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });
  // A last usage cut off is not replaced by an earlier whole one: the counts would be another request's.
  t.is(extractUsage(`${CHAT_USAGE},${CHAT_USAGE.slice(0, 30)}`), null);
});

test('no usage, null usage, counts that are not whole non-negative numbers, and broken JSON', (t) => {
  t.is(extractUsage(''), null);
  t.is(extractUsage('{"id":"x","choices":[]}'), null);
  t.is(extractUsage('{"usage":null}'), null);
  t.is(extractUsage('{"usage":{}}'), null);
  t.is(extractUsage('{"usage":{"prompt_tokens":-1,"completion_tokens":1.5,"total_tokens":"3"}}'), null);
  t.deepEqual(extractUsage('{"usage":{"prompt_tokens":"2","completion_tokens":3}}'), { prompt_tokens: null, completion_tokens: 3, total_tokens: null });
  t.is(extractUsage('{"usage":{"prompt_tokens":1,,}}'), null);
  t.deepEqual(extractUsage('{"usage" : \n {"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}'), { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });
});

test('UsageTap keeps a bounded tail: usage after a long body is found, split across chunks', (t) => {
  const tap = new UsageTap();
  tap.push(Buffer.from(`{"choices":[{"message":{"content":"${'x'.repeat(100_000)}"}}],`));
  const usage = Buffer.from(`${CHAT_USAGE}}`);
  for (let i = 0; i < usage.length; i += 7) tap.push(usage.subarray(i, i + 7));
  t.deepEqual(tap.usage(), { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });

  // Usage that came before more than the tail holds has left it.
  const early = new UsageTap();
  early.push(Buffer.from(`{${CHAT_USAGE},"padding":"`));
  early.push(Buffer.from('y'.repeat(20_000)));
  early.push(Buffer.from('"}'));
  t.is(early.usage(), null);
});
