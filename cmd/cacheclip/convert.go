package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"cacheclip/kernels"
	"cacheclip/model/gguf"
)

// cmdConvert writes a GGUF file out as a Hugging Face model directory.
func cmdConvert(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("gguf", "", "GGUF file to convert (required)")
	out := fs.String("out", "", "Hugging Face directory to create; must not exist (required)")
	dtype := fs.String("dtype", "f32", "weight dtype of model.safetensors: f32, bf16 or f16 (quantized weights are dequantized)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "cacheclip convert: %v\n", err)
		return code
	}
	if *in == "" || *out == "" {
		return fail(2, fmt.Errorf("--gguf and --out are required"))
	}
	dt, err := kernels.ParseDType(*dtype)
	if err != nil {
		return fail(2, fmt.Errorf("--dtype: %w", err))
	}
	if _, err := os.Stat(*out); err == nil {
		return fail(2, fmt.Errorf("--out %s already exists", *out))
	}
	start := time.Now()
	f, err := gguf.Open(*in)
	if err != nil {
		return fail(1, err)
	}
	defer f.Close()
	if err := ctx.Err(); err != nil {
		return fail(1, err)
	}
	if err := f.WriteHF(*out, dt); err != nil {
		return fail(1, err)
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %d tensors in the GGUF) in %.1f s\n", *out, dt, len(f.Tensors), time.Since(start).Seconds())
	return 0
}
