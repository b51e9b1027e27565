#!/usr/bin/env python3
"""Verifies a `govgate audit export` file without govgate: Python 3 standard library only.

    python3 tools/verify_export.py EXPORT_FILE [--format jsonl|csv] [--against HEAD_JSON]

Recomputes every row's hash from its canonical record (docs/audit.md, "Audit
integrity"), checks that each row links to the one before it and the first to
the segment's declared start, that each chain's head and the trailer match
what was read, that the retention anchors only move forward, and that every
policy a decision names is in the export with a text that hashes to it. With
--against, a head kept elsewhere (what `govgate audit verify --export-head`
printed) must be in the export unchanged.

Exit 0 with "export verified: ..."; 1 with the first problem; 2 for a usage
error. An export proves its segment is internally consistent and matches the
heads you kept; it cannot prove anything about rows outside it.
"""

import argparse
import hashlib
import json
import re
import struct
import sys

EXPORT_FORMAT = 'govgate-audit-export-v1'
GENESIS_HASH = '0' * 64
HEX64 = re.compile(r'[0-9a-f]{64}\Z')
CSV_NULL = '\\N'

# The columns each chain's hash covers, in order, with their kinds: gateway/store/chain.ts.
DECISION_V1 = [
    ('id', 'text'), ('customer_id', 'text'), ('api_key_id', 'text'), ('model', 'text'), ('operation', 'text'), ('meta', 'text'),
    ('risk_score', 'real'), ('allowed', 'integer'), ('reason', 'text'), ('created_at', 'text'),
]
CHAIN_COLUMNS = {
    'usagelog': DECISION_V1 + [('policy_hash', 'text'), ('causes', 'text')],
    'usagelog_outcome': [
        ('log_id', 'text'), ('status', 'integer'), ('duration_ms', 'real'), ('upstream_ms', 'real'), ('prompt_tokens', 'integer'),
        ('completion_tokens', 'integer'), ('total_tokens', 'integer'), ('error', 'text'), ('created_at', 'text'),
    ],
    'audit_event': [('id', 'text'), ('kind', 'text'), ('actor', 'text'), ('detail', 'text'), ('created_at', 'text')],
}
CHAINS = list(CHAIN_COLUMNS)
PRUNED_CHAINS = ['usagelog', 'usagelog_outcome']
CHAIN_NOUNS = {'usagelog': 'decision rows', 'usagelog_outcome': 'outcome rows', 'audit_event': 'control events'}
V1 = b'govgate-audit-v1\n'
V2 = b'govgate-audit-v2\n'


class Broken(Exception):
    """The first problem found; its text is the report."""


def record_form(chain, row):
    # Decision rows from before provenance (no policy_hash) keep their v1 record; every later one is v2.
    if chain == 'usagelog':
        return (V1, DECISION_V1) if row.get('policy_hash') is None else (V2, CHAIN_COLUMNS['usagelog'])
    return (V2 if chain == 'audit_event' else V1, CHAIN_COLUMNS[chain])


def field(text):
    if text is None:
        return b'-\n'
    data = text.encode('utf-8')
    return str(len(data)).encode() + b':' + data + b'\n'


def encode(value, kind):
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if kind == 'real':
            # The bytes of the double, not a decimal rendering: those differ between languages.
            return struct.pack('>d', float(value)).hex()
        if isinstance(value, int):
            return str(value)
        # chain.ts renders an integer-valued double in decimal and any other as JavaScript's String() does.
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def row_hash(chain, prev_hash, row):
    version, columns = record_form(chain, row)
    record = version + field(chain) + field(prev_hash) + b''.join(field(encode(row[name], kind)) for name, kind in columns)
    return hashlib.sha256(record).hexdigest()


# --- reading the two formats into the same records ---------------------------------------------

def read_jsonl(stream):
    for lineno, line in enumerate(stream, 1):
        if line in ('\n', ''):
            raise Broken(f'line {lineno} is empty: an export has one record on every line')
        try:
            record = json.loads(line)
        except ValueError as err:
            raise Broken(f'line {lineno} is not JSON ({err}): the file was cut or edited')
        if not isinstance(record, dict):
            raise Broken(f'line {lineno} is not a JSON object')
        yield lineno, record


# One field of a complete CSV record: quoted (with "" for a quote) or bare, then a comma or the end.
CSV_FIELD = re.compile(r'"([^"]*(?:""[^"]*)*)"(?=,|\Z)|([^",\r\n]*)(?=,|\Z)')


def split_csv(text, lineno):
    """RFC 4180 fields as (value, quoted): only an unquoted \\N is NULL, so a quoted "\\N" stays text."""
    fields = []
    pos = 0
    while True:
        match = CSV_FIELD.match(text, pos)
        if match is None:
            raise Broken(f'line {lineno} is not valid CSV near character {pos + 1}')
        quoted = match.group(1) is not None
        fields.append((match.group(1).replace('""', '"') if quoted else match.group(2), quoted))
        pos = match.end()
        if pos == len(text):
            return fields
        pos += 1


def csv_records(stream):
    """Complete records: a line break inside quotes does not end one, and quotes inside a record always come in pairs."""
    pending = ''
    start = 0
    for lineno, line in enumerate(stream, 1):
        if not pending:
            start = lineno
        pending += line
        if pending.count('"') % 2 == 0:
            text = pending[:-2] if pending.endswith('\r\n') else pending.rstrip('\r\n')
            yield start, text
            pending = ''
    if pending:
        raise Broken(f'line {start} opens a quoted field that never closes: the file was cut')


def typed(text, kind):
    if kind == 'text':
        return text
    try:
        return float(text) if kind == 'real' else int(text)
    except ValueError:
        # Not a number: the database held text here, which chain.ts hashes as it is.
        return text


def read_csv(stream):
    records = csv_records(stream)
    first = next(records, None)
    if first is None:
        raise Broken('the file is empty')
    header = [value for value, _ in split_csv(first[1], first[0])]
    if header[:3] != ['record', 'chain', 'rowid'] or header[-3:] != ['prev_hash', 'hash', 'data']:
        raise Broken('line 1 is not the header of a govgate export')
    for lineno, text in records:
        values = split_csv(text, lineno)
        if len(values) != len(header):
            raise Broken(f'line {lineno} has {len(values)} fields, the header {len(header)}')
        cells = {name: (None if value == CSV_NULL and not quoted else value) for name, (value, quoted) in zip(header, values)}
        kind = cells['record']
        if kind == 'row':
            chain = cells['chain']
            if chain not in CHAIN_COLUMNS:
                raise Broken(f'line {lineno} is a row of an unknown chain "{chain}"')
            try:
                row = {'record': 'row', 'chain': chain, 'rowid': int(cells['rowid'] or '')}
            except ValueError:
                raise Broken(f'line {lineno}: rowid "{cells["rowid"]}" is not a whole number')
            for name, column_kind in CHAIN_COLUMNS[chain] + [('prev_hash', 'text'), ('hash', 'text')]:
                if name not in cells:
                    raise Broken(f'line {lineno}: the header has no column "{name}"')
                row[name] = None if cells[name] is None else typed(cells[name], column_kind)
            yield lineno, row
        else:
            try:
                data = json.loads(cells['data'] or '')
            except ValueError:
                raise Broken(f'line {lineno}: its data is not JSON')
            if not isinstance(data, dict):
                raise Broken(f'line {lineno}: its data is not a JSON object')
            yield lineno, {'record': kind, **({'chain': cells['chain']} if cells['chain'] is not None else {}), **data}


# --- the checks ----------------------------------------------------------------------------------

def describe_start(start):
    if start is None:
        return 'no rows'
    if start['kind'] == 'genesis':
        return 'starting at the genesis hash'
    if start['kind'] == 'anchor':
        return f"starting after retention anchor {start['anchor']} (through row {start['rowid']})"
    return f"continuing from row {start['rowid']}"


class ChainState:
    def __init__(self):
        self.segment_line = None
        self.start = None
        self.first = None
        self.last = None
        self.count = 0
        self.head = None


class Verifier:
    def __init__(self, against):
        self.against = against
        self.header = None
        self.chains = {chain: ChainState() for chain in CHAINS}
        self.anchors = []
        self.latest_anchor = {}
        self.policies = {}
        # Each policy hash a decision names, with the first row that names it, for the report.
        self.referenced = {}
        self.trailer = None
        self.matched = {}
        self.notes = []

    def feed(self, lineno, record):
        kind = record.get('record')
        if self.trailer is not None:
            raise Broken(f'line {lineno} comes after the trailer')
        if self.header is None and kind != 'header':
            raise Broken(f'line {lineno}: the export does not start with its header')
        handler = {
            'header': self.on_header, 'segment': self.on_segment, 'row': self.on_row, 'anchor': self.on_anchor,
            'policy_version': self.on_policy_version, 'head': self.on_head, 'trailer': self.on_trailer,
        }.get(kind)
        if handler is None:
            raise Broken(f'line {lineno} is an unknown record "{kind}"')
        handler(lineno, record)

    def chain_of(self, lineno, record):
        chain = record.get('chain')
        if chain not in self.chains:
            raise Broken(f'line {lineno} names an unknown chain "{chain}"')
        return chain, self.chains[chain]

    def on_header(self, lineno, record):
        if self.header is not None:
            raise Broken(f'line {lineno} is a second header')
        if record.get('format') != EXPORT_FORMAT:
            raise Broken(f"line {lineno}: format {record.get('format')!r} is not {EXPORT_FORMAT!r}, which this verifier checks")
        self.header = record

    def on_segment(self, lineno, record):
        chain, state = self.chain_of(lineno, record)
        if state.segment_line is not None:
            raise Broken(f'line {lineno} is a second segment of {chain}')
        start = record.get('start')
        if start is not None and (not isinstance(start, dict) or start.get('kind') not in ('genesis', 'anchor', 'row')):
            raise Broken(f'line {lineno}: the {chain} segment has no valid start')
        if start is not None and self.header.get('since') is None and start['kind'] == 'row':
            raise Broken(f"{chain} row {start['rowid']}: the export has no --since, yet its {chain} segment starts after that row: rows before it are missing")
        if start is not None and start['kind'] == 'genesis' and start.get('prev_hash') != GENESIS_HASH:
            raise Broken(f'line {lineno}: the {chain} segment starts at the genesis hash, but declares another')
        state.segment_line = lineno
        state.start = start

    def on_row(self, lineno, row):
        chain, state = self.chain_of(lineno, row)
        rowid = row.get('rowid')
        where = f"{chain} row {rowid}"
        id_value = row.get(CHAIN_COLUMNS[chain][0][0])
        if isinstance(id_value, str):
            where += f' ({id_value})'
        if state.segment_line is None:
            raise Broken(f'{where} (line {lineno}) comes before its segment record')
        if state.head is not None:
            raise Broken(f'{where} (line {lineno}) comes after the head of its chain')
        if state.start is None:
            raise Broken(f'{where} (line {lineno}) is in a segment declared empty')
        if not isinstance(rowid, int) or isinstance(rowid, bool):
            raise Broken(f'line {lineno}: a {chain} row without a whole-number rowid')
        for name, _ in CHAIN_COLUMNS[chain] + [('prev_hash', 'text'), ('hash', 'text')]:
            if name not in row:
                raise Broken(f'{where} (line {lineno}) has no column "{name}"')
        prev_hash, hash_ = row['prev_hash'], row['hash']
        if not isinstance(hash_, str) or not isinstance(prev_hash, str):
            raise Broken(f'{where} (line {lineno}) has no hash: it was not written by govgate')
        if state.last is not None and rowid <= state.last['rowid']:
            raise Broken(f"{where} (line {lineno}) is out of order: it comes after row {state.last['rowid']}")
        if state.last is None and state.start['kind'] != 'genesis' and rowid <= state.start['rowid']:
            raise Broken(f"{where} (line {lineno}) has a rowid the segment's start ({describe_start(state.start)}) says came before it")
        if row_hash(chain, prev_hash, row) != hash_:
            raise Broken(f'{where} (line {lineno}) was changed: its content no longer matches its hash')
        if state.last is None:
            if prev_hash != state.start['prev_hash']:
                raise Broken(f'{where} (line {lineno}) does not link to the segment\'s start ({describe_start(state.start)}): rows before it were removed')
        elif prev_hash != state.last['hash']:
            last = state.last['rowid']
            raise Broken(f'{where} (line {lineno}) does not link to row {last} before it: rows between them were removed, or row {last} was changed and re-hashed')
        if chain == 'usagelog' and row['policy_hash'] is not None:
            self.referenced.setdefault(row['policy_hash'], where)
        if state.first is None:
            state.first = rowid
        state.last = {'rowid': rowid, 'id': id_value, 'hash': hash_, 'created_at': row['created_at']}
        state.count += 1
        self.check_kept_row(chain, rowid, id_value, hash_, where)

    def on_anchor(self, lineno, anchor):
        chain, _ = self.chain_of(lineno, anchor)
        if chain not in PRUNED_CHAINS:
            raise Broken(f'line {lineno}: retention anchor for {chain}, which retention never prunes')
        for name in ('id', 'through_rowid', 'through_hash', 'through_created_at'):
            if name not in anchor:
                raise Broken(f'line {lineno}: retention anchor without {name}')
        if self.anchors and anchor['id'] <= self.anchors[-1]['id']:
            raise Broken(f"line {lineno}: retention anchor {anchor['id']} comes after anchor {self.anchors[-1]['id']}: anchors were reordered")
        before = self.latest_anchor.get(chain)
        if before and (anchor['through_rowid'] <= before['through_rowid'] or anchor['through_created_at'] < before['through_created_at']):
            raise Broken(f"{chain} row {anchor['through_rowid']} is covered by retention anchor {anchor['id']}, which goes back behind anchor {before['id']}: anchors were forged or reordered")
        self.anchors.append(anchor)
        self.latest_anchor[chain] = anchor

    def on_policy_version(self, lineno, version):
        text, hash_ = version.get('text'), version.get('hash')
        if not isinstance(text, str) or not isinstance(hash_, str):
            raise Broken(f'line {lineno}: a policy_version without hash and text')
        if hashlib.sha256(text.encode('utf-8')).hexdigest() != hash_:
            raise Broken(f'policy_version {hash_} (line {lineno}) was changed: its text no longer hashes to it')
        self.policies[hash_] = version

    def on_head(self, lineno, record):
        chain, state = self.chain_of(lineno, record)
        if state.head is not None:
            raise Broken(f'line {lineno} is a second head of {chain}')
        if state.segment_line is None:
            raise Broken(f'line {lineno}: the head of {chain} comes before its segment')
        head = record.get('head')
        if head is None:
            if state.last is not None:
                raise Broken(f'line {lineno}: the head of {chain} says it is empty, yet rows of it came before')
        else:
            expected = {key: head.get(key) for key in ('rowid', 'id', 'hash', 'created_at')}
            if state.last is None or state.last != expected:
                where = f"{chain} row {head.get('rowid')} ({head.get('id')})"
                if state.last is None or state.last['rowid'] < expected['rowid']:
                    raise Broken(f'{where} is the head of the segment but missing from the export: rows were cut off its end')
                raise Broken(f"{where} is the head of the segment, but the export's last row is row {state.last['rowid']} ({state.last['hash']})")
        if record.get('rows') != state.count:
            raise Broken(f"line {lineno}: the head of {chain} counts {record.get('rows')} rows, the export holds {state.count}")
        state.head = record

    def on_trailer(self, lineno, trailer):
        counts = {chain: state.count for chain, state in self.chains.items()}
        if trailer.get('rows') != counts:
            raise Broken(f"line {lineno}: the trailer counts rows {trailer.get('rows')}, the export holds {counts}")
        if trailer.get('anchors') != len(self.anchors):
            raise Broken(f"line {lineno}: the trailer counts {trailer.get('anchors')} anchors, the export holds {len(self.anchors)}")
        if trailer.get('policy_versions') != len(self.policies):
            raise Broken(f"line {lineno}: the trailer counts {trailer.get('policy_versions')} policy versions, the export holds {len(self.policies)}")
        self.trailer = trailer

    def check_kept_row(self, chain, rowid, id_value, hash_, where):
        kept = (self.against or {}).get(chain)
        if kept is None or kept['rowid'] != rowid:
            return
        if kept['hash'] != hash_ or kept['id'] != id_value:
            raise Broken(f'{where} differs from the kept head: the chain was rewritten up to it')
        self.matched[chain] = 'found unchanged'

    def finish(self):
        if self.header is None:
            raise Broken('the file is empty')
        if self.trailer is None:
            raise Broken('the export has no trailer: it was cut short')
        for chain, state in self.chains.items():
            if state.segment_line is None or state.head is None:
                raise Broken(f'the export has no segment or head for {chain}')
            self.check_start(chain, state)
        for hash_, where in self.referenced.items():
            if hash_ not in self.policies:
                raise Broken(f'{where} names policy {hash_}, whose text is not in the export')
        for chain, kept in (self.against or {}).items():
            if kept is not None and chain not in self.matched:
                self.check_kept_elsewhere(chain, kept)

    def check_start(self, chain, state):
        start = state.start
        latest = self.latest_anchor.get(chain)
        if start is None or start['kind'] == 'row':
            return
        if start['kind'] == 'genesis':
            if latest:
                raise Broken(f"{chain} row {state.first}: its segment claims to start at the genesis hash, but retention anchor {latest['id']} deleted rows before it")
            return
        if latest is None or latest['id'] != start['anchor']:
            raise Broken(f"{chain} row {state.first}: its segment starts after retention anchor {start['anchor']}, which is not the chain's latest anchor in the export")
        if latest['through_hash'] != start['prev_hash'] or latest['through_rowid'] != start['rowid']:
            raise Broken(f"{chain} row {state.first}: its segment's start differs from retention anchor {latest['id']}")

    def check_kept_elsewhere(self, chain, kept):
        """A kept head that is not a row of the segment: the row it continues from, or one retention deleted since."""
        state = self.chains[chain]
        start = state.start or {}
        if start.get('kind') in ('row', 'anchor') and start.get('rowid') == kept['rowid'] and start.get('prev_hash') == kept['hash']:
            self.matched[chain] = 'is the row the segment continues from'
            return
        where = f"{chain} row {kept['rowid']} ({kept['id']})"
        latest = self.latest_anchor.get(chain)
        if latest and latest['through_rowid'] >= kept['rowid'] and latest['through_created_at'] >= kept['created_at']:
            self.notes.append(f"{where}, the kept head, has since been deleted by retention (anchored through row {latest['through_rowid']})")
            self.matched[chain] = 'deleted by retention since'
            return
        if state.last is not None and kept['rowid'] > state.last['rowid']:
            raise Broken(f'{where}, the kept head, is missing: the export ends before it (rows were cut off the end, or --until excluded it)')
        raise Broken(f'{where}, the kept head, is not in the export: it precedes the exported segment, or was removed')

    def summary(self):
        lines = list(f'note: {note}' for note in self.notes)
        for chain, state in self.chains.items():
            head = state.head['head']
            if head is None:
                lines.append(f'{chain}: no rows in the export')
                continue
            lines.append(f"{chain}: rows {state.first}..{state.last['rowid']}, {describe_start(state.start)}; head row {head['rowid']} {head['hash']} ({head['created_at']} UTC)")
        counts = ', '.join(f'{state.count} {CHAIN_NOUNS[chain]}' for chain, state in self.chains.items())
        plural = '' if len(self.policies) == 1 else 's'
        kept = f', kept head {"; ".join(f"{chain} {how}" for chain, how in self.matched.items())}' if self.matched else ''
        lines.append(f'export verified: {counts}; {len(self.anchors)} retention anchors, {len(self.policies)} policy version{plural}{kept}')
        return '\n'.join(lines)


# --- command line --------------------------------------------------------------------------------

def read_against(source):
    try:
        if source.lstrip().startswith('{'):
            text = source
        elif source == '-':
            text = sys.stdin.read()
        else:
            with open(source, encoding='utf-8') as f:
                text = f.read()
        head = json.loads(text)
    except (OSError, ValueError) as err:
        raise SystemExit(usage_error(f'cannot read the kept head {source}: {err}'))
    if not isinstance(head, dict):
        raise SystemExit(usage_error('the kept head must be a JSON object, as `govgate audit verify --export-head` prints'))
    kept = {}
    for chain in CHAINS:
        h = head.get(chain)
        if h is None:
            continue
        if not (isinstance(h, dict) and isinstance(h.get('rowid'), int) and isinstance(h.get('id'), str)
                and isinstance(h.get('hash'), str) and HEX64.match(h['hash']) and isinstance(h.get('created_at'), str)):
            raise SystemExit(usage_error(f'the kept head\'s "{chain}" must have rowid, id, hash (64 hex digits) and created_at'))
        kept[chain] = h
    return kept


def usage_error(message):
    print(f'verify_export: {message}', file=sys.stderr)
    return 2


def detect_format(path):
    with open(path, 'rb') as f:
        start = f.read(16)
    if start.startswith(b'{'):
        return 'jsonl'
    if start.startswith(b'record,'):
        return 'csv'
    return None


def main(argv):
    parser = argparse.ArgumentParser(description='Verify a `govgate audit export` file on its own.')
    parser.add_argument('export', help='the export file (JSON lines or CSV)')
    parser.add_argument('--format', choices=['jsonl', 'csv'], help='default: detected from the first line')
    parser.add_argument('--against', metavar='HEAD_JSON', help='a head kept elsewhere (govgate audit verify --export-head): a file, - for stdin, or the JSON itself')
    args = parser.parse_args(argv)
    against = read_against(args.against) if args.against is not None else None
    try:
        fmt = args.format or detect_format(args.export)
    except OSError as err:
        return usage_error(f'cannot read {args.export}: {err.strerror}')
    verifier = Verifier(against)
    try:
        if fmt is None:
            raise Broken('the file is neither a JSON lines nor a CSV govgate export')
        # newline='' keeps CR and LF inside quoted CSV fields as they were written.
        with open(args.export, encoding='utf-8', newline='') as stream:
            for lineno, record in (read_csv(stream) if fmt == 'csv' else read_jsonl(stream)):
                verifier.feed(lineno, record)
        verifier.finish()
    except UnicodeDecodeError as err:
        print(f'export BROKEN: the file is not UTF-8 ({err.reason} at byte {err.start})')
        return 1
    except Broken as problem:
        print(f'export BROKEN: {problem}')
        return 1
    print(verifier.summary())
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
