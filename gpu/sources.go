package gpu

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"cacheclip/kernels/cuda"
)

// kernelSources returns every .cu file of kernels/cuda, each with all the .cuh
// headers available to its #include lines.
func kernelSources() ([]Source, error) {
	return sourcesFrom(cuda.Files)
}

func sourcesFrom(fsys fs.FS) ([]Source, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("kernel sources: %w", err)
	}
	headers := map[string]string{}
	var names []string
	for _, e := range entries {
		switch path.Ext(e.Name()) {
		case ".cuh":
			b, err := fs.ReadFile(fsys, e.Name())
			if err != nil {
				return nil, fmt.Errorf("kernel header %s: %w", e.Name(), err)
			}
			headers[e.Name()] = string(b)
		case ".cu":
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []Source
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("kernel source %s: %w", n, err)
		}
		out = append(out, Source{Name: n, Code: string(b), Headers: headers})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kernel sources: no .cu files embedded")
	}
	return out, nil
}

// kernelNames lists the extern "C" __global__ functions a source defines, so the
// loader can check that every kernel the backend launches exists.
func kernelNames(code string) []string {
	var out []string
	const marker = `extern "C" __global__ void`
	for _, line := range strings.Split(code, "\n") {
		i := strings.Index(line, marker)
		if i < 0 {
			continue
		}
		rest := strings.TrimSpace(line[i+len(marker):])
		if strings.HasPrefix(rest, "__launch_bounds__") {
			if j := strings.Index(rest, ")"); j >= 0 {
				rest = strings.TrimSpace(rest[j+1:])
			}
		}
		if j := strings.IndexByte(rest, '('); j > 0 {
			out = append(out, strings.TrimSpace(rest[:j]))
		}
	}
	return out
}
