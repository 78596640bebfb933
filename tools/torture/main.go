// Command torture is the checking half of scripts/torture.sh: it compares an
// output dataset with a reference run and prepares spoiled inputs.
//
//	torture compare REF_DIR OUT_DIR   prints: rows duplicates missing extra mismatches
//	torture spoil IN.parquet OUT.parquet K   copies a questions file, giving K rows an unknown chunk id
//	torture damage flip|truncate FILE SEED   flips one bit of FILE, or cuts it short, at a seeded random offset
//
// compare reads every part-*.parquet file in the directory, as DuckDB's
// read_parquet('OUT/part-*.parquet') would, so a part left behind by a crash
// shows up as duplicates.
package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/parquet-go/parquet-go"
)

type outRow struct {
	QueryID string  `parquet:"query_id"`
	Answer  *string `parquet:"answer,optional"`
	Status  string  `parquet:"status"`
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "compare":
		if len(os.Args) != 4 {
			usage()
		}
		err = compare(os.Args[2], os.Args[3])
	case "damage":
		if len(os.Args) != 5 {
			usage()
		}
		seed, serr := strconv.ParseUint(os.Args[4], 10, 64)
		if serr != nil {
			usage()
		}
		err = damage(os.Args[2], os.Args[3], seed)
	case "spoil":
		if len(os.Args) != 5 {
			usage()
		}
		k, kerr := strconv.Atoi(os.Args[4])
		if kerr != nil {
			usage()
		}
		err = spoil(os.Args[2], os.Args[3], k)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: torture compare REF_DIR OUT_DIR | torture spoil IN OUT K | torture damage flip|truncate FILE SEED")
	os.Exit(2)
}

// read returns each query_id's rows (more than one is a duplicate).
func read(dir string) (map[string][]outRow, error) {
	files, err := filepath.Glob(filepath.Join(dir, "part-*.parquet"))
	if err != nil {
		return nil, err
	}
	got := map[string][]outRow{}
	for _, f := range files {
		rows, err := parquet.ReadFile[outRow](f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, r := range rows {
			got[r.QueryID] = append(got[r.QueryID], r)
		}
	}
	return got, nil
}

func compare(refDir, outDir string) error {
	ref, err := read(refDir)
	if err != nil {
		return err
	}
	out, err := read(outDir)
	if err != nil {
		return err
	}
	var rows, dups, missing, extra, mismatch int
	for id, rs := range out {
		rows += len(rs)
		dups += len(rs) - 1
		want, ok := ref[id]
		if !ok {
			extra++
			continue
		}
		if !same(want[0], rs[0]) {
			mismatch++
		}
	}
	for id := range ref {
		if _, ok := out[id]; !ok {
			missing++
		}
	}
	fmt.Println(rows, dups, missing, extra, mismatch)
	return nil
}

func same(a, b outRow) bool {
	if a.Status != b.Status || (a.Answer == nil) != (b.Answer == nil) {
		return false
	}
	return a.Answer == nil || *a.Answer == *b.Answer
}

// spoil copies a questions file, replacing the chunk ids of every
// (n/k)-th row with one that no corpus holds.
func spoil(in, out string, k int) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	n := int(pf.NumRows())
	rows := make([]parquet.Row, n)
	got, err := r.ReadRows(rows)
	if got != n {
		return fmt.Errorf("%s: read %d of %d rows: %v", in, got, n, err)
	}
	leaf, ok := pf.Schema().Lookup("chunk_ids", "list", "element")
	if !ok {
		return fmt.Errorf("%s: no chunk_ids list<string> column", in)
	}
	col := leaf.ColumnIndex
	step := max(1, n/max(1, k))
	spoiled := 0
	for i := 0; i < n && spoiled < k; i += step {
		for j, v := range rows[i] {
			if v.Column() == col && !v.IsNull() && v.RepetitionLevel() == 0 {
				rows[i][j] = parquet.ByteArrayValue([]byte(fmt.Sprintf("nope%06d", i))).Level(v.RepetitionLevel(), v.DefinitionLevel(), col)
			}
		}
		spoiled++
	}
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	w := parquet.NewWriter(o, pf.Schema())
	if _, err := w.WriteRows(rows); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	fmt.Println(spoiled)
	return o.Close()
}

// damage flips one bit of path or truncates it, at an offset drawn from seed,
// and prints what it did.
func damage(how, path string, seed uint64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) < 2 {
		return fmt.Errorf("%s: too small to damage", path)
	}
	rng := rand.New(rand.NewPCG(seed, 20))
	at := rng.IntN(len(b))
	switch how {
	case "flip":
		bit := rng.IntN(8)
		b[at] ^= 1 << bit
		fmt.Printf("flipped bit %d of byte %d of %d\n", bit, at, len(b))
	case "truncate":
		at = max(1, at)
		b = b[:at]
		fmt.Printf("truncated to %d bytes\n", at)
	default:
		return fmt.Errorf("damage %q: want flip or truncate", how)
	}
	return os.WriteFile(path, b, 0o644)
}
