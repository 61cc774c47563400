//go:build tools

// Package tools pins the control-plane programs that scripts/cluster builds.
// Nothing here is compiled into Ramp; the imports only let `go mod tidy`
// keep the pins and their dependency graph in go.sum.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
