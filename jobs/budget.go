package jobs

import (
	"fmt"
	"strconv"
	"strings"
)

// ErrorBudget bounds how many rows may fail before the job fails: either an
// absolute count or a fraction of the rows seen. Text form: "25" (count),
// "0.01" or "1%" (fraction). A count of 0 means no row may fail.
type ErrorBudget struct {
	Count    int64   // used when IsFraction is false
	Fraction float64 // in [0, 1], used when IsFraction is true
	// IsFraction selects Fraction over Count.
	IsFraction bool
}

// ParseErrorBudget parses "N", "0.x" or "P%". Anything with a '.' or '%' is a
// fraction, so "1.0" means every row may fail, not one row.
func ParseErrorBudget(s string) (ErrorBudget, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return ErrorBudget{}, fmt.Errorf("empty error budget")
	case strings.HasSuffix(s, "%"):
		p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || p < 0 || p > 100 {
			return ErrorBudget{}, fmt.Errorf("error budget %q: want a percentage in 0..100%%", s)
		}
		return ErrorBudget{Fraction: p / 100, IsFraction: true}, nil
	case strings.ContainsAny(s, ".eE"):
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1 {
			return ErrorBudget{}, fmt.Errorf("error budget %q: want a fraction in 0..1", s)
		}
		return ErrorBudget{Fraction: f, IsFraction: true}, nil
	default:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return ErrorBudget{}, fmt.Errorf("error budget %q: want a count >= 0, a fraction like 0.01 or a percentage like 1%%", s)
		}
		return ErrorBudget{Count: n}, nil
	}
}

// String returns the text form that ParseErrorBudget accepts.
func (b ErrorBudget) String() string {
	if b.IsFraction {
		return strconv.FormatFloat(b.Fraction*100, 'g', -1, 64) + "%"
	}
	return strconv.FormatInt(b.Count, 10)
}

// Exceeded reports whether failed rows out of seen rows spend the budget.
// A fraction is only judged against the rows seen so far, so a runner that
// wants to stop early with a fractional budget should call ExceededEarly.
func (b ErrorBudget) Exceeded(failed, seen int64) bool {
	if b.IsFraction {
		if seen == 0 {
			return false
		}
		return float64(failed) > b.Fraction*float64(seen)
	}
	return failed > b.Count
}

// ExceededEarly reports whether the budget is already certain to be spent,
// given that at most total rows will be seen. It lets a runner stop a job
// early (for fractions, once failures exceed the fraction of the upper bound).
func (b ErrorBudget) ExceededEarly(failed, total int64) bool {
	if b.IsFraction {
		return float64(failed) > b.Fraction*float64(total)
	}
	return failed > b.Count
}

// MarshalText and UnmarshalText let the budget sit in YAML/JSON job files.
func (b ErrorBudget) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

func (b *ErrorBudget) UnmarshalText(p []byte) error {
	v, err := ParseErrorBudget(string(p))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

func (s Partition) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Partition) UnmarshalText(p []byte) error {
	v, err := ParsePartition(string(p))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
