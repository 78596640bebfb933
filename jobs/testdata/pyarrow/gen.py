"""Writes the Parquet files of TestThirdPartyParquetPassesTheGuard with
pyarrow (pip install pyarrow==25.0.1; python3 gen.py in this folder): every
codec, both data page versions, dictionary, plain and delta encodings, small
pages (many per column chunk) and an all-null column (long RLE runs), so that
the readers' guard (jobs/parquetguard.go) is shown to pass what a real
writer produces. Row i's values follow the formulas of the Go test."""
import pyarrow as pa
import pyarrow.parquet as pq

N = 1200


def questions():
    return pa.table({
        "query_id": pa.array([f"q{i:05d}" for i in range(N)]),
        "question": pa.array([f"question {i} about topic {i % 37}?" for i in range(N)]),
        "chunk_ids": pa.array([[f"c{(i + k) % 500}" for k in range(1 + i % 4)] for i in range(N)],
                              pa.list_(pa.string())),
        "answers": pa.array([None if i % 5 == 0 else [f"answer {i}"] for i in range(N)], pa.list_(pa.string())),
        "max_new_tokens": pa.array([None if i % 3 else 1 + i % 64 for i in range(N)], pa.int32()),
        "note": pa.array([None] * N, pa.string()),
        "flag": pa.array([i % 7 == 0 for i in range(N)]),
    })


def corpus():
    return pa.table({
        "chunk_id": pa.array([f"c{i}" for i in range(500)]),
        "text": pa.array([f"text of chunk {i} " + "word " * (i % 13) for i in range(500)]),
    })


VARIANTS = [
    # name, compression, data page version, dictionary, column encodings
    ("none-v1-dict", "none", "1.0", True, None),
    ("snappy-v2-dict", "snappy", "2.0", True, None),
    ("gzip-v1-plain", "gzip", "1.0", False, None),
    ("zstd-v2-plain", "zstd", "2.0", False, None),
    ("brotli-v1-dict", "brotli", "1.0", True, None),
    ("zstd-v1-dict", "zstd", "1.0", True, None),  # not lz4: parquet-go v0.32 misreads pyarrow's LZ4_RAW pages
    ("zstd-v2-delta", "zstd", "2.0", False,
     {"query_id": "DELTA_BYTE_ARRAY", "question": "DELTA_BYTE_ARRAY", "chunk_ids": "DELTA_BYTE_ARRAY",
      "max_new_tokens": "DELTA_BINARY_PACKED"}),
    ("snappy-v1-delta", "snappy", "1.0", False,
     {"query_id": "DELTA_LENGTH_BYTE_ARRAY", "question": "DELTA_LENGTH_BYTE_ARRAY",
      "answers": "DELTA_BYTE_ARRAY", "max_new_tokens": "DELTA_BINARY_PACKED"}),
]

for name, codec, version, dictionary, encodings in VARIANTS:
    for kind, table in (("questions", questions()), ("corpus", corpus())):
        enc = encodings
        if enc and kind == "corpus":
            enc = {"chunk_id": "DELTA_BYTE_ARRAY", "text": "DELTA_LENGTH_BYTE_ARRAY"}
        elif enc:
            enc = dict(enc)
        pq.write_table(table, f"{kind}-{name}.parquet", compression=codec, data_page_version=version,
                       use_dictionary=dictionary, column_encoding=enc, row_group_size=500,
                       data_page_size=2048, write_statistics=True)
