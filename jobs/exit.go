package jobs

import (
	"context"
	"errors"
)

// ExitCode is the process exit status a job reports to its scheduler.
// The values are part of the public contract (docs/JOBS.md); never renumber.
type ExitCode int

const (
	// ExitOK: every row of the job (every shard) is committed with status=ok.
	ExitOK ExitCode = 0
	// ExitInternal: a bug or an unexpected failure (I/O, device); rerunning may help.
	ExitInternal ExitCode = 1
	// ExitBadConfig: bad flags, job file or input files; rerunning will not help.
	ExitBadConfig ExitCode = 2
	// ExitPartial: the run is complete but some rows are status=error (or were
	// duplicate query_ids), within the error budget.
	ExitPartial ExitCode = 3
	// ExitBudgetExceeded: more rows failed than the error budget allows.
	ExitBudgetExceeded ExitCode = 4
	// ExitLeaseHeld: another live process holds this shard's lease (or took it
	// over from this one); nothing was written by this process after that.
	ExitLeaseHeld ExitCode = 5
	// ExitIncomplete: `cacheclip stats` on a dataset some of whose shards are
	// not complete (never started or not finished).
	ExitIncomplete ExitCode = 6
	// ExitInterrupted: SIGINT/SIGTERM; committed parts are kept, rerun to resume.
	ExitInterrupted ExitCode = 130
)

func (c ExitCode) String() string {
	switch c {
	case ExitOK:
		return "ok"
	case ExitInternal:
		return "internal error"
	case ExitBadConfig:
		return "bad configuration or input"
	case ExitPartial:
		return "partial failure"
	case ExitBudgetExceeded:
		return "error budget exceeded"
	case ExitLeaseHeld:
		return "shard held by another process"
	case ExitIncomplete:
		return "incomplete: shards missing"
	case ExitInterrupted:
		return "interrupted"
	}
	return "unknown"
}

// ConfigError marks an error as the user's (bad flags, job file, input schema),
// so that ExitCodeOf maps it to ExitBadConfig.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(err error) error {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	return &ConfigError{Err: err}
}

// IsConfigError reports whether err (or anything it wraps) is a ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// ErrBudgetExceeded is returned (wrapped) when the error budget is spent.
var ErrBudgetExceeded = errors.New("error budget exceeded")

// ExitCodeOf maps the outcome of a run to an exit code. err is the run's error
// (nil when it finished); interrupted is whether a signal stopped it; s is the
// dataset's statistics for this shard when the run finished; its own
// MaxErrors, when set, is the budget that applies (it may be the dataset's
// recorded one rather than budget).
func ExitCodeOf(err error, interrupted bool, s *Stats, budget ErrorBudget) ExitCode {
	var held *LeaseHeldError
	switch {
	case errors.As(err, &held):
		return ExitLeaseHeld
	case interrupted:
		return ExitInterrupted
	case errors.Is(err, ErrBudgetExceeded):
		return ExitBudgetExceeded
	case IsConfigError(err):
		return ExitBadConfig
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case err != nil:
		return ExitInternal
	}
	if s == nil {
		return ExitOK
	}
	if s.MaxErrors != nil {
		budget = *s.MaxErrors
	}
	bad := s.Errors + s.Duplicates
	if s.BudgetExceeded || budget.Exceeded(bad, s.Rows+s.Duplicates) {
		return ExitBudgetExceeded
	}
	if bad > 0 {
		return ExitPartial
	}
	return ExitOK
}
