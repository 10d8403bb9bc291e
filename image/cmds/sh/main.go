// Command sh is the appliance's sh: it runs gosh, u-root's shell, with its
// own arguments. /bin/sh links to gosh too, but the busybox binary finds a
// command by argv[0] only when argv[0] is the path of one of its links. A
// program that starts "sh" by name passes just "sh", so the busybox binary
// needs a command of that name.
package main

import (
	"fmt"
	"os"
	"syscall"
)

// gosh is the link to the shell in the busybox binary.
const gosh = "/bbin/gosh"

func main() {
	err := syscall.Exec(gosh, append([]string{gosh}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "sh: run %s: %v\n", gosh, err)
	os.Exit(127)
}
