// kindcheck: checks kind cluster config files with kind's own loader (see main.go).
//
// The module path sits under kind's (sigs.k8s.io/kind/pkg/...) on purpose: that is what lets it
// import kind's internal config packages; main.go explains why. It is never published.
module sigs.k8s.io/kind/pkg/flowpodkindcheck

go 1.24.0

// Keep at KIND_VERSION in scripts/cluster.d/versions.env (build_kindcheck refuses a mismatch):
//   go get sigs.k8s.io/kind@$KIND_VERSION && go mod tidy
require sigs.k8s.io/kind v0.33.0

require (
	github.com/pkg/errors v0.9.1 // indirect
	go.yaml.in/yaml/v3 v3.0.4 // indirect
)
