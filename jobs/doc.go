// Package jobs holds everything of a cacheclip batch job that does not need a
// model: the job spec (file + flags), the streaming questions reader, the corpus
// lookup, the output dataset (atomic part files, manifests, resume, _SUCCESS),
// fan-out by query_id, statistics and scheduler exit codes. See docs/JOBS.md.
package jobs
