package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"cacheclip/model/testmodel"
)

func cmdTestModel(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("testmodel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	variant := fs.String("variant", "qwen2", "architecture variant: "+variantNames())
	out := fs.String("out", "", "output directory (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "cacheclip testmodel: --out is required")
		return 2
	}
	for _, s := range testmodel.Variants() {
		if s.Name == *variant {
			if err := testmodel.Write(*out, s); err != nil {
				fmt.Fprintf(stderr, "cacheclip testmodel: %v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "wrote %s model to %s\n", s.Name, *out)
			return 0
		}
	}
	fmt.Fprintf(stderr, "cacheclip testmodel: unknown variant %q (have %s)\n", *variant, variantNames())
	return 2
}

func variantNames() string {
	var n []string
	for _, s := range testmodel.Variants() {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}
