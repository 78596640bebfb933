// Package eval generates RULER-style evaluation sets in cacheclip's job format and scores
// the answers.
//
// Generators (Generate) build needle-in-a-haystack tasks (single, multi-key, multi-value,
// multi-query; noise or distractor-needle haystacks; numbers, words or short UUIDs as values),
// variable tracking whose assignment chains cross chunk boundaries (vt: RULER's one chain;
// vt_distractor: with distractor chains, so that the asked value must be matched), two-hop questions
// whose facts sit in two different chunks. Each example is split into chunks of a target size
// in tokens of whatever tokenizer the caller passes, and WriteDataset writes the questions and
// corpus Parquet files that `cacheclip run` reads.
//
// The value formats (5-digit numbers, words of wordlist.txt, 4+4 hex UUIDs, 3-letter variable
// names) are the ones the trained test-bed pair in testdata/testbed was trained on; its
// training script (tools/testbed/train.py) draws examples with Python's random from other
// seeds, so evaluation examples are held out.
//
// Scoring follows RULER: string_match_all (mean over references of whether each appears in
// the prediction, case-insensitive) and string_match_part (whether any does), both ×100.
// Model-free fidelity against the `full` method compares first-token distributions by KL
// divergence and greedy answer tokens by agreement.
package eval
