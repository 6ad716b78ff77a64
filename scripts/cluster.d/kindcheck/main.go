// Command kindcheck checks kind cluster config files, such as flowpod's kind-config.yaml (the
// README's quickstart cluster), without Docker and without creating anything, so that a typo in
// one fails CI instead of a user's `kind create cluster`.
//
// Usage: kindcheck [-name NAME] FILE...
//
// Each FILE ("-" reads standard input) goes through the same steps, using kind's own code, that
// `kind create cluster --config FILE` runs before it touches a container runtime:
//
//  1. encoding.Load: read the file, pick the decoder from apiVersion and kind (unknown ones are
//     errors), decode strictly (an unknown or misspelled field is an error), apply the
//     v1alpha4 defaults and convert to kind's internal config type;
//  2. the `--name` override, if -name is given (kind also takes it from KIND_CLUSTER_NAME; this
//     tool does not, so its verdict does not depend on the environment);
//  3. config.SetDefaultsCluster, the defaulting kind's create applies to every config;
//  4. (*config.Cluster).Validate: cluster name, ports and port mappings, node roles, subnets,
//     IP family, kube-proxy mode, at least one control-plane node.
//
// It prints one line per file, "ok: FILE (N nodes)" or "error: FILE: <kind's message>" (kind's
// multi-line YAML errors are folded onto that line), and exits 1 if any file failed, 2 on bad
// usage. Kind's create steps that need a container runtime (provider checks, "does the cluster
// exist", provisioning) and its warning about cluster names longer than 50 characters are not
// run.
//
// How kind's loader is reached: kind keeps its config loading (encoding.Load) and validation
// (Validate) in internal packages, sigs.k8s.io/kind/pkg/internal/apis/config[/encoding], and
// its only public way into them, cluster.Provider.Create with cluster.CreateWithConfigFile,
// first queries the container runtime and then creates the cluster. In module mode the go
// command decides whether an import of an "internal" package is allowed by import path, not by
// directory (golang.org/issue/23970, which made it so for nested modules): code whose import
// path lies under the internal directory's parent may import it, whichever module it is in. So
// this module is named sigs.k8s.io/kind/pkg/flowpodkindcheck, a module nested in kind's import
// path (never published), which lets it import kind's loader directly from the pinned, checksum-
// verified sigs.k8s.io/kind release and call it unchanged. The alternatives were worse: a fork
// or vendored copy of kind patched to export the loader (copies kind's code and drifts), a
// go:linkname or -overlay hack (fragile, outside the language's rules), or re-implementing
// strict decoding and validation with kind's public v1alpha4 types (would drift from what kind
// accepts). Kind's internal API is not stable, so the module pins kind at KIND_VERSION and a
// kind upgrade that changes it fails this program's build rather than silently passing.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"sigs.k8s.io/kind/pkg/internal/apis/config"
	"sigs.k8s.io/kind/pkg/internal/apis/config/encoding"
)

func main() {
	flags := flag.NewFlagSet("kindcheck", flag.ContinueOnError)
	name := flags.String("name", "", "cluster name, as kind create cluster's --name (validated too)")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "usage: kindcheck [-name NAME] FILE...  (FILE - reads stdin)")
		flags.PrintDefaults()
	}
	if err := flags.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if flags.NArg() == 0 {
		flags.Usage()
		os.Exit(2)
	}
	failed := false
	for _, path := range flags.Args() {
		nodes, err := check(path, *name)
		if err != nil {
			failed = true
			fmt.Printf("error: %s: %s\n", path, oneLine(err.Error()))
			continue
		}
		fmt.Printf("ok: %s (%d %s)\n", path, nodes, plural(nodes, "node", "nodes"))
	}
	if failed {
		os.Exit(1)
	}
}

// check loads, defaults and validates one config file as `kind create cluster` does, and
// returns its number of nodes.
func check(path, nameOverride string) (int, error) {
	var cfg *config.Cluster
	var err error
	switch path {
	case "":
		// encoding.Load("") returns kind's built-in default config; an empty argument is a
		// mistake here, never a request for that.
		return 0, fmt.Errorf("empty file name")
	case "-":
		var raw []byte
		if raw, err = io.ReadAll(os.Stdin); err != nil {
			return 0, fmt.Errorf("error reading config from stdin: %w", err)
		}
		cfg, err = encoding.Parse(raw)
	default:
		cfg, err = encoding.Load(path)
	}
	if err != nil {
		return 0, err
	}
	if nameOverride != "" {
		cfg.Name = nameOverride
	}
	config.SetDefaultsCluster(cfg)
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	return len(cfg.Nodes), nil
}

// oneLine folds a multi-line message (the YAML decoder lists one problem per line) onto one line.
func oneLine(msg string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
