// Package examples holds deployment examples for `cacheclip run` (cron,
// Airflow, a Kubernetes Indexed Job) and a labeling job file; its test checks them against the real
// flag set of package jobs, so a renamed flag cannot leave them stale.
package examples
