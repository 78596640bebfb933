package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"cacheclip/jobs"
	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/kvshards/s3store"
	"cacheclip/kvshards/shardcmd"
	"cacheclip/loader"
	"cacheclip/progress"
	"cacheclip/runner"
)

func cmdShards(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: cacheclip shards build|verify|inspect|gc [flags]")
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("shards "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	store := fs.String("store", "", "shard store directory or s3://bucket/prefix (required)")
	storeCache := fs.String("store-cache", "", "local disk tier in front of an s3:// store (default: the user cache directory)")
	unusedFor := fs.Duration("unused-for", 30*24*time.Hour, "gc on s3://: remove shards not used for this long")
	grace := fs.Duration("grace", 24*time.Hour, "gc on s3://: never remove a shard younger than this")
	corpus := fs.String("corpus", "", "corpus Parquet file (chunk_id, text)")
	modelDir := fs.String("model", "", "model directory whose caches the shards hold")
	tmpl := fs.String("template", "", "prompt template (default: detected from the model)")
	weights := fs.String("weights", "", jobs.WeightsUsage)
	workers := fs.Int("workers", 1, "parallel builders or verifiers in this process")
	dtype := fs.String("dtype", "bf16", "storage dtype of built shards: bf16, f16 or f32")
	dryRun := fs.Bool("dry-run", false, "gc: list what would be removed")
	quarantine := fs.Bool("quarantine", true, "verify: move damaged shards to <store>/quarantine")
	logFormat := fs.String("log-format", "text", "log lines as text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := progress.NewLogger(stderr, *logFormat, slog.LevelInfo)
	if err := loader.CheckWeights(*weights); err != nil {
		fmt.Fprintf(stderr, "cacheclip shards %s: --weights: %v\n", sub, err)
		return 2
	}
	if *store == "" {
		fmt.Fprintf(stderr, "cacheclip shards %s: --store is required\n", sub)
		return 2
	}
	opts := kvshards.DefaultOptions()
	opts.Logger = log
	dt, err := kernels.ParseDType(*dtype)
	if err != nil {
		fmt.Fprintf(stderr, "cacheclip shards: --dtype: %v\n", err)
		return 2
	}
	opts.DType = dt
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cacheclip shards %s: %v\n", sub, err)
		return 1
	}
	var st *kvshards.Store
	var builder shardcmd.Ensurer
	var remote *s3store.Store
	if s3store.IsURL(*store) {
		loc, err := s3store.ParseURL(*store)
		if err != nil {
			fmt.Fprintf(stderr, "cacheclip shards: --store: %v\n", err)
			return 2
		}
		dir := *storeCache
		if dir == "" {
			if dir, err = s3store.DefaultCacheDir(loc); err != nil {
				fmt.Fprintf(stderr, "cacheclip shards: %v\n", err)
				return 2
			}
		}
		remote, err = s3store.Open(ctx, *store, s3store.Options{Config: s3store.FromEnv(), CacheDir: dir, Local: opts, Logger: log})
		if err != nil {
			fmt.Fprintf(stderr, "cacheclip shards: %v\n", err)
			return 2
		}
		defer remote.Close()
		st, builder = remote.Local(), remote
	} else {
		st, err = kvshards.OpenStore(*store, opts)
		if err != nil {
			fmt.Fprintf(stderr, "cacheclip shards: %v\n", err)
			return 2
		}
		defer st.Close()
		builder = st
	}
	// needModel loads the model and the corpus for gc.
	needModel := func() (*loader.Bundle, *runner.CorpusChunks, []int32, error) {
		if *modelDir == "" || *corpus == "" {
			return nil, nil, nil, errors.New("--model and --corpus are required")
		}
		b, err := loader.OpenWith(*modelDir, loader.Options{Template: *tmpl, Weights: *weights})
		if err != nil {
			return nil, nil, nil, err
		}
		c, err := jobs.LoadCorpus(ctx, *corpus, jobs.CorpusOptions{})
		if err != nil {
			b.Close()
			return nil, nil, nil, err
		}
		prefix, err := b.PrefixIDs()
		if err != nil {
			b.Close()
			return nil, nil, nil, err
		}
		return b, runner.NewCorpusChunks(c), prefix, nil
	}
	switch sub {
	case "build":
		if *modelDir == "" || *corpus == "" {
			return fail(errors.New("--model and --corpus are required"))
		}
		res, err := runner.BuildShards(ctx, runner.ShardBuild{Store: builder, Corpus: *corpus, Model: *modelDir, Template: *tmpl, Weights: *weights,
			Workers: *workers, Stderr: stderr, Out: stdout, Logger: log})
		if err != nil {
			return fail(err)
		}
		log.Info("shards built", "chunks", res.Chunks, "built", res.Built, "skipped", res.Skipped, "bytes", res.BytesWritten, "chunks_per_s", res.ChunksPerSec())
		return 0
	case "verify":
		var fp *[32]byte
		if *modelDir != "" {
			b, err := loader.OpenWith(*modelDir, loader.Options{Template: *tmpl, Weights: *weights})
			if err != nil {
				return fail(err)
			}
			f := b.Model.Fingerprint()
			fp = &f
			b.Close()
		}
		if remote != nil {
			return verifyRemote(ctx, remote, fp, *quarantine, *workers, stdout, fail)
		}
		rep, err := shardcmd.Verify(ctx, st, shardcmd.VerifyOptions{Fingerprint: fp, Quarantine: *quarantine, Workers: *workers})
		fmt.Fprintf(stdout, "checked %d shards (%s), %d damaged, %d leftover temp/lock files\n", rep.Checked, shardcmd.HumanBytes(rep.Bytes), len(rep.Damaged), rep.Leftovers)
		for _, d := range rep.Damaged {
			fmt.Fprintf(stdout, "DAMAGED %s %s: %v\n", d.Key, d.Path, d.Err)
		}
		if err != nil {
			return fail(err)
		}
		return 0
	case "inspect":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: cacheclip shards inspect --store DIR KEY|PATH")
			return 2
		}
		target := fs.Arg(0)
		if remote != nil {
			k, err := kvshards.ParseKey(target)
			if err != nil {
				return fail(fmt.Errorf("on an s3:// store, inspect takes a key: %w", err))
			}
			if _, err := remote.Fetch(ctx, k); err != nil {
				return fail(err)
			}
		}
		if err := shardcmd.Inspect(stdout, st, target); err != nil {
			return fail(err)
		}
		return 0
	case "gc":
		if remote != nil {
			rep, err := remote.GC(ctx, *unusedFor, *grace, *dryRun)
			if err != nil {
				return fail(err)
			}
			verb := "removed"
			if rep.DryRun {
				verb = "would remove"
			}
			fmt.Fprintf(stdout, "kept %d shards, %s %d (%s) unused for %v, %d stale locks/sidecars\n", rep.Kept, verb, rep.Removed, shardcmd.HumanBytes(rep.RemovedBytes), *unusedFor, rep.Leftovers)
			for _, p := range rep.Sample {
				fmt.Fprintf(stdout, "  %s\n", p)
			}
			return 0
		}
		b, src, prefix, err := needModel()
		if err != nil {
			return fail(err)
		}
		defer b.Close()
		live, err := shardcmd.LiveKeys(ctx, b.Model.Fingerprint(), prefix, src, b.ChunkIDs)
		if err != nil {
			return fail(err)
		}
		rep, err := shardcmd.GC(ctx, st, live, *dryRun)
		if err != nil {
			return fail(err)
		}
		verb := "removed"
		if rep.DryRun {
			verb = "would remove"
		}
		fmt.Fprintf(stdout, "kept %d shards, %s %d (%s), %d stale temp/lock files\n", rep.Kept, verb, rep.Removed, shardcmd.HumanBytes(rep.RemovedBytes), rep.Leftovers)
		for _, p := range rep.Sample {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
		return 0
	}
	fmt.Fprintf(stderr, "cacheclip shards: unknown subcommand %q (build, verify, inspect, gc)\n", sub)
	return 2
}

// verifyRemote checks every shard object of an s3:// store.
func verifyRemote(ctx context.Context, rs *s3store.Store, fp *[32]byte, quarantine bool, workers int, stdout io.Writer, fail func(error) int) int {
	rep, err := rs.Verify(ctx, fp, quarantine, workers, nil)
	fmt.Fprintf(stdout, "checked %d shards (%s) in %s, %d damaged, %d build locks\n", rep.Checked, shardcmd.HumanBytes(rep.Bytes), rs.Location(), len(rep.Damaged), rep.Locks)
	for _, d := range rep.Damaged {
		fmt.Fprintf(stdout, "DAMAGED %s %s: %v", d.Key, d.URL, d.Err)
		if d.Quarantined != "" {
			fmt.Fprintf(stdout, " (moved to %s)", d.Quarantined)
		}
		fmt.Fprintln(stdout)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}
