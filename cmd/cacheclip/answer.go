package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/kvshards/s3store"
	"cacheclip/loader"
	"cacheclip/model"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"
)

// splitChunks takes the files after --chunks (up to the next flag) out of args,
// since the flag package gives a flag one value.
func splitChunks(args []string) (rest, files []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--chunks" || a == "-chunks" {
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				files = append(files, args[i])
			}
			continue
		}
		if v, ok := strings.CutPrefix(a, "--chunks="); ok {
			files = append(files, v)
			continue
		}
		rest = append(rest, a)
	}
	return rest, files
}

func cmdAnswer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	rest, chunkFiles := splitChunks(args)
	fs := flag.NewFlagSet("answer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cacheclip answer --model DIR [--aux DIR] [--method cacheclip] [--ratio 0.2] [--store DIR] --chunks a.txt b.txt … --question \"…\"")
		fs.PrintDefaults()
	}
	dir := fs.String("model", "", "primary model directory (required)")
	auxDir := fs.String("aux", "", "auxiliary model directory (required for cacheclip)")
	methodName := fs.String("method", prefill.CacheClip, "full, reuse, ape, cacheblend or cacheclip")
	ratio := fs.Float64("ratio", 0.2, "share of context tokens recomputed (cacheblend, cacheclip)")
	storeDir := fs.String("store", "", "KV shard store directory (default: chunk caches computed in memory)")
	question := fs.String("question", "", "the question (required)")
	maxNew := fs.Int("max-new-tokens", 64, "answer tokens at most")
	tmplName := fs.String("template", "", "primary template overriding detection: chatml, llama3, plain")
	auxTmpl := fs.String("aux-template", "", "auxiliary template overriding detection")
	checkLayer := fs.Int("check-layer", 1, "cacheblend: layer where tokens are ranked")
	rankBy := fs.String("rank-by", "v", "cacheblend: rank by deviation of v or k")
	apeT := fs.Float64("ape-temp", 0.9, "ape: attention temperature T")
	apeS := fs.Float64("ape-scale", 0.9, "ape: scaling factor S")
	reduce := fs.String("aux-reduce", auxscore.Mean, "cacheclip: reduce over question tokens: mean, max, last")
	window := fs.Int("aux-window", 8, "cacheclip: grouping window w")
	minCount := fs.Int("aux-min", 5, "cacheclip: candidates m that make a window recomputed whole")
	auxCheap := fs.Bool("aux-cached", false, "cacheclip: the auxiliary model reuses its own per-chunk caches and computes only the question")
	threads := fs.Int("threads", 0, "CPU threads (0: all)")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cacheclip answer: unexpected arguments %q (chunk files go after --chunks)\n", fs.Args())
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "cacheclip answer: "+format+"\n", a...)
		return 2
	}
	if s3store.IsURL(*storeDir) {
		return usageErr("--store %s: answer takes a store directory (an s3:// store is for run and shards; point --store at its local tier instead)", *storeDir)
	}
	if *dir == "" {
		return usageErr("--model is required")
	}
	if strings.TrimSpace(*question) == "" {
		return usageErr("--question is required")
	}
	meth, err := prefill.NewMethod(*methodName)
	if err != nil {
		return usageErr("%v", err)
	}
	meth.Ratio, meth.CheckLayer, meth.RankBy, meth.Temp, meth.Scale = *ratio, *checkLayer, *rankBy, *apeT, *apeS
	if *ratio < 0 || *ratio > 1 || *ratio != *ratio {
		return usageErr("--ratio %v outside [0, 1]", *ratio)
	}
	if meth.Name == prefill.CacheClip && *auxDir == "" {
		return usageErr("--method cacheclip needs --aux")
	}
	if *maxNew < 0 {
		return usageErr("--max-new-tokens %d is negative", *maxNew)
	}
	var q prefill.Query
	q.Question = *question
	for _, f := range chunkFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "cacheclip answer: chunk: %v\n", err)
			return 1
		}
		q.Chunks = append(q.Chunks, string(b))
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cacheclip answer: %v\n", err)
		return 1
	}
	pool := kernels.NewPool(*threads)
	prim, err := loader.Open(*dir, *tmplName)
	if err != nil {
		return fail(err)
	}
	defer prim.Close()
	eng := &prefill.Engine{Model: prim.Model, Layout: prim, Pool: pool}
	var store *kvshards.Store
	if *storeDir != "" {
		store, err = kvshards.OpenStore(*storeDir, kvshards.DefaultOptions())
		if err != nil {
			return fail(err)
		}
		defer store.Close()
		eng.Source = &prefill.StoreSource{Store: store, Computer: &prefill.Computer{Model: prim.Model, Pool: pool}}
	}
	if meth.Name == prefill.CacheClip {
		aux, err := loader.Open(*auxDir, *auxTmpl)
		if err != nil {
			return fail(fmt.Errorf("auxiliary model: %w", err))
		}
		defer aux.Close()
		sc := &auxscore.Scorer{Model: aux.Model, Layout: aux, Pool: pool, Opts: auxscore.Options{Reduce: *reduce, Window: *window, MinCount: *minCount}}
		if *auxCheap {
			comp := &prefill.Computer{Model: aux.Model, Pool: pool}
			if store != nil {
				sc.Source = &prefill.StoreSource{Store: store, Computer: comp}
			} else {
				sc.Source = prefill.NewMemorySource(comp)
			}
		}
		meth.Selector = sc
	}
	start := time.Now()
	ans, err := eng.Answer(ctx, q, meth, model.GenOptions{MaxNewTokens: *maxNew, StopIDs: prim.Stops}, prim.Tok)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return fail(err)
	}
	st := ans.Stats
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintln(stdout, strings.TrimSpace(ans.Text))
	fmt.Fprintf(stdout, "\nmethod %s, ratio %.3g\n", st.Method, st.Ratio)
	fmt.Fprintf(stdout, "tokens: prefix %d, context %d, question %d; recomputed %d context tokens; generated %d (%s)\n",
		st.PrefixTokens, st.ContextTokens, st.QuestionTokens, st.RecomputedTokens, len(ans.IDs), ans.Reason)
	fmt.Fprintf(stdout, "answer ids: %v\n", ans.IDs)
	if len(ans.Selected) > 0 && len(ans.Selected) <= 64 {
		fmt.Fprintf(stdout, "recomputed context tokens: %v\n", ans.Selected)
	}
	fmt.Fprintf(stdout, "time: load %s, assembly %s, aux %s, recompute %s, ttft %s, decode %s, total %s\n",
		ms(st.Load), ms(st.Assembly), ms(st.Aux), ms(st.Recompute), ms(st.TTFT), ms(ans.Decode), ms(time.Since(start)))
	return 0
}
