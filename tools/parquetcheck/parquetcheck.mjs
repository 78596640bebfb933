#!/usr/bin/env node
// Usage: node parquetcheck.mjs OUTPUT_DIR
// Prints {"files": n, "rows": n, "distinct_query_ids": n, "columns": [{"name", "type"}]}
// for the committed part files of a cacheclip output dataset, read by DuckDB;
// for a label job also "label_rows" (rows with a label), "label_probs_max_dev"
// (the largest |sum(label_probs) - 1| over them) and "label_is_answer" (rows
// whose label equals their answer).
// Only files listed in the manifests are read, as a resuming writer may have
// left an uncommitted part behind until its next start.
import { DuckDBInstance } from '@duckdb/node-api';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

function committedParts(dir) {
  const parts = [];
  for (const name of readdirSync(dir).sort()) {
    if (/^_manifest-s\d{4}of\d{4}\.json$/.test(name)) {
      const m = JSON.parse(readFileSync(join(dir, name), 'utf8'));
      for (const p of m.parts ?? []) parts.push(join(dir, p.file));
    }
  }
  return parts;
}

async function main() {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: parquetcheck OUTPUT_DIR');
    process.exit(2);
  }
  const files = committedParts(dir);
  if (files.length === 0) {
    console.error(`parquetcheck: ${dir}: no committed part files`);
    process.exit(1);
  }
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  const list = '[' + files.map((f) => `'${f.replaceAll("'", "''")}'`).join(', ') + ']';
  const src = `read_parquet(${list})`;
  const described = await conn.runAndReadAll(`DESCRIBE SELECT * FROM ${src}`);
  const columns = described.getRowObjects().map((r) => ({ name: r.column_name, type: r.column_type }));
  const counted = await conn.runAndReadAll(
    `SELECT count(*)::BIGINT AS n, count(DISTINCT query_id)::BIGINT AS d FROM ${src}`);
  const [row] = counted.getRowObjects();
  const out = {
    files: files.length,
    rows: Number(row.n),
    distinct_query_ids: Number(row.d),
    columns,
  };
  if (columns.some((c) => c.name === 'label_probs')) {
    const lab = await conn.runAndReadAll(
      `SELECT count(label)::BIGINT AS n, coalesce(max(abs(list_sum(label_probs) - 1)), 0)::DOUBLE AS dev,
              count(*) FILTER (WHERE label = answer)::BIGINT AS same
       FROM ${src} WHERE label IS NOT NULL`);
    const [l] = lab.getRowObjects();
    out.label_rows = Number(l.n);
    out.label_probs_max_dev = Number(l.dev);
    out.label_is_answer = Number(l.same);
  }
  console.log(JSON.stringify(out));
  conn.closeSync?.();
}

main().catch((e) => {
  console.error(`parquetcheck: ${e?.message ?? e}`);
  process.exit(1);
});
