package shardcmd

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"

	"cacheclip/kvshards"

	"golang.org/x/sync/errgroup"
)

// ErrDamaged is returned (wrapped) by Verify when any shard failed; the CLI
// exits non-zero on it.
var ErrDamaged = errors.New("damaged shards found")

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Fingerprint, if set, must be every shard's model fingerprint.
	Fingerprint *[32]byte
	// Quarantine moves damaged shards to <store>/quarantine.
	Quarantine bool
	Workers    int // default 1
	Progress   Progress
}

// Damage is one shard that failed verification.
type Damage struct {
	Key         kvshards.Key
	Path        string
	Err         error
	Quarantined string
}

// VerifyReport lists what Verify found.
type VerifyReport struct {
	Checked   int
	Bytes     int64
	Damaged   []Damage
	Leftovers int // temp and lock files (of running or crashed builders; gc removes stale ones)
}

// Verify checks every shard's header, block checksums, key and (optionally)
// fingerprint. It returns an error wrapping ErrDamaged when any shard failed.
func Verify(ctx context.Context, st *kvshards.Store, o VerifyOptions) (VerifyReport, error) {
	var rep VerifyReport
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	paths := make(chan kvshards.Entry, 64)
	g.Go(func() error {
		defer close(paths)
		return st.Walk(gctx, func(e kvshards.Entry) error {
			if e.Kind != kvshards.EntryShard {
				if e.Kind == kvshards.EntryTemp || e.Kind == kvshards.EntryLock {
					mu.Lock()
					rep.Leftovers++
					mu.Unlock()
				}
				return nil
			}
			select {
			case paths <- e:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	for range max(o.Workers, 1) {
		g.Go(func() error {
			for e := range paths {
				h, err := st.VerifyFile(e.Path, nil)
				if err == nil && o.Fingerprint != nil && h.Fingerprint != *o.Fingerprint {
					err = &kvshards.MismatchError{Key: e.Key, Path: e.Path, Field: "model fingerprint",
						Got: hex.EncodeToString(h.Fingerprint[:]), Want: hex.EncodeToString(o.Fingerprint[:])}
				}
				if errors.Is(err, os.ErrNotExist) {
					continue // removed by gc or quarantined by a job meanwhile
				}
				var d *Damage
				if err != nil {
					d = &Damage{Key: e.Key, Path: e.Path, Err: err}
					if o.Quarantine && errors.Is(err, kvshards.ErrCorrupt) {
						if q, qerr := st.Quarantine(e.Key); qerr == nil {
							d.Quarantined = q
						}
					}
				}
				mu.Lock()
				rep.Checked++
				rep.Bytes += e.Info.Size()
				if d != nil {
					rep.Damaged = append(rep.Damaged, *d)
				}
				mu.Unlock()
				if o.Progress != nil {
					o.Progress.Add(1)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return rep, fmt.Errorf("shards verify %s: %w", st.Dir(), err)
	}
	if len(rep.Damaged) > 0 {
		return rep, fmt.Errorf("shards verify %s: %d of %d shards failed (first: %v): %w", st.Dir(), len(rep.Damaged), rep.Checked, rep.Damaged[0].Err, ErrDamaged)
	}
	return rep, nil
}

// Inspect prints a shard's header, block sizes and checksum status. keyOrPath
// is a file path, or a 64-hex key looked up in st (st may be nil for paths).
// A damaged shard is described as far as it can be and its error returned.
func Inspect(w io.Writer, st *kvshards.Store, keyOrPath string) error {
	path := keyOrPath
	if _, err := os.Stat(path); err != nil {
		k, kerr := kvshards.ParseKey(keyOrPath)
		if kerr != nil {
			return fmt.Errorf("shards inspect: %q is neither a file nor a shard key: %w", keyOrPath, err)
		}
		if st == nil {
			return fmt.Errorf("shards inspect: key %s given without a store", k)
		}
		path = st.Path(k)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("shards inspect: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "path\t%s\n", path)
	fmt.Fprintf(tw, "file size\t%d (%s)\n", len(data), HumanBytes(int64(len(data))))
	h, herr := kvshards.ParseBytes(data, false)
	if herr != nil {
		fmt.Fprintf(tw, "status\tDAMAGED: %v\n", herr)
		return fmt.Errorf("shards inspect %s: %w", path, herr)
	}
	fmt.Fprintf(tw, "key\t%s\n", h.Key)
	fmt.Fprintf(tw, "format version\t%d\n", h.Version)
	fmt.Fprintf(tw, "model fingerprint\t%s\n", hex.EncodeToString(h.Fingerprint[:]))
	ph := hex.EncodeToString(h.PrefixHash[:])
	if h.PrefixHash == kvshards.PrefixHash(nil) {
		ph += " (empty prefix: this is a prefix's own shard)"
	}
	fmt.Fprintf(tw, "prefix hash\t%s\n", ph)
	fmt.Fprintf(tw, "layers × kv heads × head dim\t%d × %d × %d\n", h.Layers, h.KVHeads, h.HeadDim)
	fmt.Fprintf(tw, "storage dtype\t%v\n", h.DType)
	fmt.Fprintf(tw, "tokens\t%d at positions %d..%d\n", h.Tokens, h.BasePos, int(h.BasePos)+h.Tokens-1)
	blk := int64(h.Tokens) * int64(h.KVHeads) * int64(h.HeadDim) * int64(h.DType.Size())
	payload := 2 * int64(h.Layers) * blk
	fmt.Fprintf(tw, "header\t%d bytes (checksum %016x)\n", h.HeaderSize, h.HeaderSum)
	fmt.Fprintf(tw, "K/V block\t%d bytes each, %d blocks, %s of K/V (%.1f%% of the file)\n",
		blk, 2*h.Layers, HumanBytes(payload), 100*float64(payload)/float64(len(data)))
	status := "OK (every block checksum and the key verified)"
	_, verr := kvshards.ParseBytes(data, true)
	if verr != nil {
		status = "DAMAGED: " + verr.Error()
	}
	fmt.Fprintf(tw, "status\t%s\n", status)
	if verr != nil {
		return fmt.Errorf("shards inspect %s: %w", path, verr)
	}
	if sh, err := kvshards.FromBytes(data); err == nil {
		toks, _ := sh.Tokens()
		n := min(len(toks), 16)
		more := ""
		if n < len(toks) {
			more = " …"
		}
		fmt.Fprintf(tw, "first tokens\t%s%s\n", strings.Trim(fmt.Sprint(toks[:n]), "[]"), more)
		sh.Close()
	}
	return nil
}
