package s3store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"cacheclip/kvshards"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"
)

// Fetch downloads key's shard into the tier (checked in full, but for no
// particular model) unless it is there, and returns its tier path.
func (s *Store) Fetch(ctx context.Context, k kvshards.Key) (string, error) {
	if !s.local.Has(k) {
		if err := s.fetch(ctx, k, nil); err != nil {
			return "", err
		}
	}
	return s.local.Path(k), nil
}

// objGroup is what the listing holds for one key: its shard, last-use
// sidecar and build lock (adjacent in the listing's lexical order).
type objGroup struct {
	key               kvshards.Key
	shard, used, lock *minio.ObjectInfo
}

// walk streams the listing grouped by key; objects outside the layout are
// skipped (probe objects, quarantine).
func (s *Store) walk(ctx context.Context, fn func(objGroup) error) error {
	var cur objGroup
	have := false
	flush := func() error {
		if !have {
			return nil
		}
		have = false
		return fn(cur)
	}
	err := s.b.list(ctx, "", func(o minio.ObjectInfo) error {
		rel := s.b.rel(o.Key)
		parts := strings.Split(rel, "/")
		if len(parts) != 3 || len(parts[0]) != 2 || len(parts[1]) != 2 {
			return nil
		}
		name, ext, ok := strings.Cut(parts[2], ".")
		k, err := kvshards.ParseKey(name)
		if !ok || err != nil {
			return nil
		}
		if !have || k != cur.key {
			if err := flush(); err != nil {
				return err
			}
			cur, have = objGroup{key: k}, true
		}
		switch ext {
		case "kvs":
			cur.shard = &o
		case "used":
			cur.used = &o
		case "lock":
			cur.lock = &o
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// Damage is one remote shard that failed verification.
type Damage struct {
	Key         kvshards.Key
	URL         string
	Err         error
	Quarantined string // object it was moved to
}

// VerifyReport lists what Verify found.
type VerifyReport struct {
	Checked int
	Bytes   int64
	Damaged []Damage
	Locks   int // build locks present (running builders, or stale ones gc removes)
}

// Verify downloads and fully checks every shard object (header, key against
// the object name, every block, and the model fingerprint when fp is set).
// quarantine moves damaged objects to <prefix>/quarantine/.
func (s *Store) Verify(ctx context.Context, fp *[32]byte, quarantine bool, workers int, progress func()) (VerifyReport, error) {
	var rep VerifyReport
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, workers) + 1)
	g.Go(func() error {
		return s.walk(gctx, func(og objGroup) error {
			if og.lock != nil {
				mu.Lock()
				rep.Locks++
				mu.Unlock()
			}
			if og.shard == nil {
				return nil
			}
			g.Go(func() error {
				d, n, err := s.verifyOne(gctx, og.key, fp, quarantine)
				if err != nil {
					return err
				}
				mu.Lock()
				rep.Checked++
				rep.Bytes += n
				if d != nil {
					rep.Damaged = append(rep.Damaged, *d)
				}
				mu.Unlock()
				if progress != nil {
					progress()
				}
				return nil
			})
			return nil
		})
	})
	if err := g.Wait(); err != nil {
		return rep, fmt.Errorf("verify %s: %w", s.b.loc, err)
	}
	if len(rep.Damaged) > 0 {
		return rep, fmt.Errorf("verify %s: %d of %d shards damaged", s.b.loc, len(rep.Damaged), rep.Checked)
	}
	return rep, nil
}

func (s *Store) verifyOne(ctx context.Context, k kvshards.Key, fp *[32]byte, quarantine bool) (*Damage, int64, error) {
	key := s.b.loc.key(shardObject(k.String()))
	var data []byte
	err := s.do(ctx, "download "+s.URL(k), func(ctx context.Context) (err error) {
		data, err = s.b.get(ctx, key)
		return err
	})
	if isNotFound(err) {
		return nil, 0, nil // removed meanwhile
	}
	if err != nil {
		return nil, 0, err
	}
	hdr, err := s.local.CheckBytes(k, s.URL(k), data, nil)
	if err == nil && fp != nil && hdr.Fingerprint != *fp {
		err = fmt.Errorf("shard %s: model fingerprint %x, expected %x", s.URL(k), hdr.Fingerprint, *fp)
	}
	if err == nil {
		return nil, int64(len(data)), nil
	}
	d := &Damage{Key: k, URL: s.URL(k), Err: err}
	if quarantine {
		q := s.b.loc.key(fmt.Sprintf("quarantine/%s.%d.kvs", k, time.Now().UnixNano()))
		if _, perr := s.b.put(ctx, q, data, false, nil); perr == nil {
			if rerr := s.b.remove(ctx, key); rerr == nil {
				d.Quarantined = Scheme + s.b.loc.Bucket + "/" + q
			}
		}
	}
	return d, int64(len(data)), nil
}

// GCReport says what GC removed (or would remove).
type GCReport struct {
	Kept, Removed int
	RemovedBytes  int64
	Leftovers     int      // stale build locks and orphaned sidecars
	Sample        []string // up to 20 objects removed (or to remove)
	DryRun        bool
}

// GC removes shards last used more than unusedFor ago (the later of the
// object's and its last-use sidecar's modification times), never one whose
// object is younger than grace, and build locks older than the stale-lock age.
func (s *Store) GC(ctx context.Context, unusedFor, grace time.Duration, dryRun bool) (GCReport, error) {
	rep := GCReport{DryRun: dryRun}
	now := time.Now()
	drop := func(o *minio.ObjectInfo) error {
		if len(rep.Sample) < 20 {
			rep.Sample = append(rep.Sample, Scheme+s.b.loc.Bucket+"/"+o.Key)
		}
		if dryRun {
			return nil
		}
		if err := s.b.remove(ctx, o.Key); err != nil && !isNotFound(err) {
			return fmt.Errorf("remove %s: %w", o.Key, err)
		}
		return nil
	}
	err := s.walk(ctx, func(og objGroup) error {
		if og.lock != nil && now.Sub(og.lock.LastModified) > s.opts.StaleLock {
			rep.Leftovers++
			if err := drop(og.lock); err != nil {
				return err
			}
		}
		if og.shard == nil {
			if og.used != nil && now.Sub(og.used.LastModified) > grace {
				rep.Leftovers++
				return drop(og.used)
			}
			return nil
		}
		last := og.shard.LastModified
		if og.used != nil && og.used.LastModified.After(last) {
			last = og.used.LastModified
		}
		if now.Sub(last) <= unusedFor || now.Sub(og.shard.LastModified) <= grace {
			rep.Kept++
			return nil
		}
		rep.Removed++
		rep.RemovedBytes += og.shard.Size
		if err := drop(og.shard); err != nil {
			return err
		}
		if og.used != nil {
			return drop(og.used)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("shards gc %s: %w", s.b.loc, err)
	}
	return rep, nil
}
