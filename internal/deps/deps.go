// Package deps pins the module's third-party dependencies while packages are
// being written in parallel; it is removed once every dependency is imported
// by real code.
package deps

import (
	_ "github.com/dlclark/regexp2"
	_ "github.com/parquet-go/parquet-go"
	_ "golang.org/x/sync/errgroup"
	_ "github.com/ebitengine/purego"
	_ "gonum.org/v1/plot"
	_ "golang.org/x/sys/cpu"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/term"
	_ "github.com/schollz/progressbar/v3"
	_ "gopkg.in/yaml.v3"
	_ "github.com/zeebo/xxh3"
)
