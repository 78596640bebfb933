// Command shardbench compares the shard store's fan-out of single files with
// packed files plus an index at scale (build rate, random-read latency, disk
// bytes per chunk beyond the K/V payload):
//
//	go run ./kvshards/shardbench -n 100000 -dir /tmp/shardbench
//
// Figures and the resulting choice are in docs/SHARD_FORMAT.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"cacheclip/kernels"
	"cacheclip/kvshards/internal/layoutbench"
)

func main() {
	var c layoutbench.Config
	dt := flag.String("dtype", "bf16", "storage dtype")
	keep := flag.Bool("keep", false, "keep the stores after the run")
	flag.StringVar(&c.Dir, "dir", "", "scratch directory (required; removed afterwards unless -keep)")
	flag.IntVar(&c.N, "n", 100000, "shards")
	flag.IntVar(&c.Layers, "layers", 2, "layers")
	flag.IntVar(&c.KVHeads, "kvheads", 2, "kv heads")
	flag.IntVar(&c.HeadDim, "headdim", 16, "head dim")
	flag.IntVar(&c.Tok, "tokens", 32, "tokens per chunk")
	flag.IntVar(&c.Reads, "reads", 10000, "random reads timed")
	flag.BoolVar(&c.NoSync, "nosync", false, "skip fsync")
	flag.BoolVar(&c.Cold, "cold", false, "drop the page cache of each shard before reading it")
	flag.Parse()
	d, err := kernels.ParseDType(*dt)
	if err != nil || c.Dir == "" {
		fmt.Fprintln(os.Stderr, "shardbench: -dir is required and -dtype must be f32, f16 or bf16")
		os.Exit(2)
	}
	c.DType = d
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !*keep {
		defer os.RemoveAll(c.Dir)
	}
	fmt.Printf("%d shards of %d layers × %d kv heads × %d head dim × %d tokens (%v), fsync %v, cold reads %v\n",
		c.N, c.Layers, c.KVHeads, c.HeadDim, c.Tok, c.DType, !c.NoSync, c.Cold)
	res, err := layoutbench.Run(context.Background(), c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shardbench:", err)
		os.Exit(1)
	}
	for _, r := range res {
		fmt.Println(r)
	}
}
