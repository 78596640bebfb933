package jobs

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/zeebo/xxh3"
)

// Partition is one slice of a fanned-out job: index I of N (0 <= I < N).
// The zero value is treated as the whole job (0/1). Users name it "shard"
// (--shard i/N, the job key shard, file tags like s0003of0008); in code a
// shard is a KV file of package kvshards, so the Go name is Partition.
type Partition struct {
	I, N int
}

// whole is the partition of a job that is not fanned out; the zero Partition means
// the same.
var whole = Partition{I: 0, N: 1}

// ParsePartition parses "i/N" with 0 <= i < N. The empty string means 0/1.
func ParsePartition(s string) (Partition, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return whole, nil
	}
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return Partition{}, fmt.Errorf("shard %q: want i/N, for example 3/8", s)
	}
	i, err := strconv.Atoi(strings.TrimSpace(a))
	if err != nil {
		return Partition{}, fmt.Errorf("shard %q: index: %w", s, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(b))
	if err != nil {
		return Partition{}, fmt.Errorf("shard %q: count: %w", s, err)
	}
	sh := Partition{I: i, N: n}
	if err := sh.Validate(); err != nil {
		return Partition{}, err
	}
	return sh, nil
}

// Validate reports whether 0 <= I < N and N is in a range that the part-file
// names (4 digits) can hold.
func (s Partition) Validate() error {
	if s.N < 1 || s.N > 9999 {
		return fmt.Errorf("shard %d/%d: N must be in 1..9999", s.I, s.N)
	}
	if s.I < 0 || s.I >= s.N {
		return fmt.Errorf("shard %d/%d: index must be in 0..%d", s.I, s.N, s.N-1)
	}
	return nil
}

func (s Partition) norm() Partition {
	if s.N == 0 {
		return whole
	}
	return s
}

// String formats the shard as "i/N".
func (s Partition) String() string {
	s = s.norm()
	return fmt.Sprintf("%d/%d", s.I, s.N)
}

// Tag is the fixed-width form used in file names: "s0003of0008".
func (s Partition) Tag() string {
	s = s.norm()
	return fmt.Sprintf("s%04dof%04d", s.I, s.N)
}

// Owns reports whether queryID belongs to this shard.
func (s Partition) Owns(queryID string) bool {
	s = s.norm()
	return s.N == 1 || PartitionOf(queryID, s.N) == s.I
}

// PartitionOf maps a query_id to a shard in [0, n): xxh3-64 of the id's bytes mod n.
// It is a pure function of the id so every worker and every rerun agrees, and
// duplicates of an id always land in the same shard (so duplicate detection
// stays shard-local).
func PartitionOf(queryID string, n int) int {
	if n <= 1 {
		return 0
	}
	return int(xxh3.HashString(queryID) % uint64(n))
}
