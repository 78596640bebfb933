package kvshards

import (
	"errors"
	"fmt"
)

// RebuildHint tells the user how to replace a refused or damaged shard.
const RebuildHint = "rebuild it with `cacheclip shards build` (or let a job with write-through rebuild it)"

// ErrCorrupt matches (errors.Is) every CorruptError.
var ErrCorrupt = errors.New("shard is damaged")

// ErrMismatch matches (errors.Is) every MismatchError.
var ErrMismatch = errors.New("shard does not match what the caller expects")

// ErrNotFound matches (errors.Is) a missing shard; it also matches fs.ErrNotExist.
var ErrNotFound = errors.New("shard not found")

// CorruptError reports a shard whose bytes fail the format's checks: bad
// header, checksum mismatch, truncation, or a key that does not match its
// file name. The file was moved to Quarantined ("" if the move failed or
// quarantine was not requested) and was not used.
type CorruptError struct {
	Key         Key
	Path        string
	Block       string // "header", "tokens", "layer 3 V", "file"
	Reason      string
	Truncated   bool
	Quarantined string
}

func (e *CorruptError) Error() string {
	s := fmt.Sprintf("shard %s (%s) is damaged: %s: %s", e.Key, e.Path, e.Block, e.Reason)
	if e.Quarantined != "" {
		s += "; moved to " + e.Quarantined
	}
	return s + "; " + RebuildHint
}

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// MismatchError reports a well-formed shard made for another model, another
// prefix, another format version or other dimensions than the caller expects.
// It is refused, not quarantined.
type MismatchError struct {
	Key       Key
	Path      string
	Field     string // "format version", "model fingerprint", "prefix hash", "layers", ...
	Got, Want string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("shard %s (%s) refused: %s differs: shard has %s, caller expects %s; the shard was made by another model, prompt prefix or cacheclip version: %s",
		e.Key, e.Path, e.Field, e.Got, e.Want, RebuildHint)
}

func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// NotFoundError reports a shard that is not in the store.
type NotFoundError struct {
	Key  Key
	Path string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("shard %s not found at %s; build it with `cacheclip shards build` or enable write-through", e.Key, e.Path)
}

func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// Unwrap lets errors.Is(err, fs.ErrNotExist) hold as well.
func (e *NotFoundError) Unwrap() error { return errNotExist }
