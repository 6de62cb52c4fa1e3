// Command etcd is the etcd server, built from the same release line Kubernetes
// pins in its go.mod, for the cluster tests' private API server. It does what
// etcd's own main does: hand the arguments to etcdmain.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
