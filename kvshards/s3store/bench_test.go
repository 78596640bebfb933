package s3store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"cacheclip/kvshards"
	"cacheclip/kvshards/kvtest"
	"cacheclip/kvshards/s3store"
	"cacheclip/kvshards/s3store/s3test"
)

// BenchmarkFetch compares getting shards from the local S3 server into an
// empty tier (download, full check, tier write, map) with reading the same
// bytes from local disk: a plain read of the file, and a local store's
// verified open (no host cache). Shards have the Qwen2.5-0.5B shape (24
// layers, 2 KV heads, head dim 64) at 256 tokens, bf16: 3 MiB each.
func BenchmarkFetch(b *testing.B) {
	srv := s3test.Start(b)
	srv.MakeBucket(b, "bench")
	c := kvtest.New(1, 24, 2, 64)
	const n = 16
	var keys []kvshards.Key
	lo := kvshards.DefaultOptions()
	lo.CacheBytes = 0
	lo.NoSync = true
	seed := open(b, srv, srv.Endpoint, "s3://bench/f", b.TempDir(), func(o *s3store.Options) { o.Local = lo })
	for i := range n {
		ch := make([]int32, 256)
		for j := range ch {
			ch[j] = int32(i*1000 + j)
		}
		r, err := seed.Ensure(context.Background(), c, prefix, ch)
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, r.Key)
	}
	size := seed.Stats().BuiltBytes / n
	want := kvshards.Expect{Fingerprint: c.Fingerprint(), PrefixHash: kvshards.PrefixHash(prefix)}
	b.Run("s3-to-tier", func(b *testing.B) {
		b.SetBytes(size)
		var st *s3store.Store
		for i := 0; i < b.N; i++ {
			if i%n == 0 { // a fresh, empty tier every n shards
				b.StopTimer()
				st = open(b, srv, srv.Endpoint, "s3://bench/f", b.TempDir(), func(o *s3store.Options) { o.Local = lo })
				b.StartTimer()
			}
			h, err := st.Open(context.Background(), keys[i%n], want)
			if err != nil {
				b.Fatal(err)
			}
			h.Close()
		}
	})
	dir := seed.Local()
	b.Run("disk-read", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			if _, err := os.ReadFile(dir.Path(keys[i%n])); err != nil {
				b.Fatal(err)
			}
		}
	})
	local, err := kvshards.OpenStore(filepath.Dir(filepath.Dir(filepath.Dir(dir.Path(keys[0])))), lo)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("disk-open-verified", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			h, err := local.Open(context.Background(), keys[i%n], want)
			if err != nil {
				b.Fatal(fmt.Errorf("%w (tier shards all present?)", err))
			}
			h.Close()
		}
	})
}
