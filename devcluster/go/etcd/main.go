// Command etcd is upstream etcd, built as a dependency of this module because
// go.etcd.io/etcd/server/v3 carries replace directives that forbid `go install`.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
