package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"cacheclip/jobs"
	"cacheclip/kernels"
	"cacheclip/loader"
	"cacheclip/model"
	"cacheclip/model/tokenizer"
)

func cmdGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("model", "", "Hugging Face model directory or .gguf file (required)")
	text := fs.String("prompt", "", "prompt text (the question, with --chat)")
	chat := fs.Bool("chat", true, "wrap the prompt in the model's chat template")
	tmplName := fs.String("template", "", "template name overriding detection: chatml, llama3, plain")
	maxNew := fs.Int("max-new-tokens", 32, "tokens to generate at most")
	temp := fs.Float64("temperature", 0, "sampling temperature (0: greedy)")
	topP := fs.Float64("top-p", 0, "nucleus sampling threshold (0: off)")
	topK := fs.Int("top-k", 0, "top-k sampling (0: off)")
	seed := fs.Uint64("seed", 0, "sampling seed")
	threads := fs.Int("threads", 0, "CPU threads (0: all)")
	weights := fs.String("weights", "", jobs.WeightsUsage)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "cacheclip generate: --model is required")
		return 2
	}
	if err := loader.CheckWeights(*weights); err != nil {
		fmt.Fprintf(stderr, "cacheclip generate: --weights: %v\n", err)
		return 2
	}
	b, err := loader.OpenWith(*dir, loader.Options{Template: *tmplName, Weights: *weights})
	if err != nil {
		fmt.Fprintf(stderr, "cacheclip generate: %v\n", err)
		return 1
	}
	defer b.Close()
	m, tok := b.Model, b.Tok
	var ids []int32
	var stops []int32
	if *chat {
		tmpl := b.Template
		lay, err := tmpl.Build(tok, nil, *text)
		if err != nil {
			fmt.Fprintf(stderr, "cacheclip generate: %v\n", err)
			return 1
		}
		ids = append(append(ids, lay.Prefix.IDs...), lay.Question.IDs...)
	} else {
		enc, err := tok.Encode(*text, tokenizer.EncodeOptions{ParseSpecial: true})
		if err != nil {
			fmt.Fprintf(stderr, "cacheclip generate: %v\n", err)
			return 1
		}
		ids = enc.IDs
	}
	if len(ids) == 0 {
		fmt.Fprintln(stderr, "cacheclip generate: empty prompt")
		return 2
	}
	stops = append(stops, m.Config.EOS...)
	stops = append(stops, tok.Special().StopIDs()...)
	m.Pool = kernels.NewPool(*threads)
	start := time.Now()
	cache := m.HostCache(len(ids) + *maxNew)
	logits, err := model.Append(ctx, m, cache, ids, 0, 0, true)
	if err != nil {
		fmt.Fprintf(stderr, "cacheclip generate: %v\n", err)
		return 1
	}
	ttft := time.Since(start)
	st := &model.GenState{Cache: cache, NextPos: int32(len(ids)), Logits: logits, Tok: tok,
		Opts: model.GenOptions{MaxNewTokens: *maxNew, StopIDs: stops,
			Sampling: model.Sampling{Temperature: float32(*temp), TopP: float32(*topP), TopK: *topK, Seed: *seed}}}
	if err := m.Generate(ctx, []*model.GenState{st}); err != nil {
		fmt.Fprintf(stderr, "cacheclip generate: %v\n", err)
		return 1
	}
	total := time.Since(start)
	fmt.Fprintln(stdout, st.Text)
	fmt.Fprintf(stderr, "prompt %d tokens, generated %d (%s), ttft %v, total %v\n", len(ids), len(st.IDs), st.Reason, ttft.Round(time.Millisecond), total.Round(time.Millisecond))
	return 0
}
