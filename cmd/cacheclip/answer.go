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
	"cacheclip/loader"
	"cacheclip/methods"
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
	methodName := fs.String("method", methods.CacheClip, methods.Default().Usage())
	ratio := fs.Float64("ratio", 0.2, "share of context tokens recomputed (methods that take a ratio)")
	storeDir := fs.String("store", "", "KV shard store directory (default: chunk caches computed in memory)")
	question := fs.String("question", "", "the question (required)")
	maxNew := fs.Int("max-new-tokens", 64, "answer tokens at most")
	tmplName := fs.String("template", "", "primary template overriding detection: chatml, llama3, plain")
	params := map[string]string{}
	fs.Func("method-param", methods.Default().ParamUsage(), func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("want key=value, got %q", v)
		}
		params[strings.TrimSpace(k)] = val
		return nil
	})
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
	if *dir == "" {
		return usageErr("--model is required")
	}
	if strings.TrimSpace(*question) == "" {
		return usageErr("--question is required")
	}
	cfg, err := methods.Default().Resolve(*methodName, *ratio, params)
	if err != nil {
		return usageErr("%v", err)
	}
	meth := prefill.Method{Config: cfg}
	if cfg.Entry.NeedsAux && *auxDir == "" {
		return usageErr("--method %s needs --aux", cfg.Name())
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
	if cfg.Entry.NeedsAux {
		aux, err := loader.Open(*auxDir, cfg.Values.String("aux_template"))
		if err != nil {
			return fail(fmt.Errorf("auxiliary model: %w", err))
		}
		defer aux.Close()
		sc := &auxscore.Scorer{Model: aux.Model, Layout: aux, Pool: pool, Opts: auxscore.Options{Reduce: cfg.Values.String("reduce"), Window: cfg.Values.Int("window"), MinCount: cfg.Values.Int("min_count")}}
		if cfg.Values.String("aux_mode") == "cached" {
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
	fmt.Fprintf(stdout, "\nmethod %s, requested ratio %.3g, recomputed %.3g of the context\n", st.Method, st.Ratio, float64(st.RecomputedTokens)/float64(max(1, st.ContextTokens)))
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
