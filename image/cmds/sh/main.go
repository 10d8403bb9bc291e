// Command sh is the appliance's sh: it runs gosh, u-root's shell, with its
// own arguments. /bin/sh already links to gosh, but a program that starts
// "sh" by name passes that name as argv[0], and the busybox binary finds
// its command by argv[0] only when it is a path to one of its links. So
// "sh -c CMD" needs a busybox command of that name.
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
