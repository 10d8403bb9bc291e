package endpoint

import "syscall"

// makeStaleSocket binds a Unix socket at path and closes it without
// listening, as a process that died leaves it.
func makeStaleSocket(path string) error {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrUnix{Name: path})
}
