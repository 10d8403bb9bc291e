// Package supervise runs a fixed set of services as child processes,
// restarts them when they exit and stops them in order. Blocktree's PID 1
// uses it for the storage daemon and the FUSE server.
//
// # Services and dependencies
//
// A Service names a program and, in its After list, the services it
// depends on. New rejects unknown names and cycles, so the services form a
// directed acyclic graph.
// A service starts only when every service in its After list is ready.
// When a dependency exits, every service that depends on it, directly or
// through others, is stopped first, dependents before their own
// dependencies. The dependency is restarted only after they have all
// exited, and they start again once it is ready. No dependent ever runs
// against two generations of a dependency. Such a stop does not count as a
// crash of the dependent.
//
// # Readiness
//
// A service without NotifyReady is ready as soon as its process has
// started. A service with NotifyReady gets the write end of a pipe as file
// descriptor 3 and BT_READY_FD=3 in its environment. It is ready when it
// writes the line "READY" to that pipe, which NotifyReady does. A
// ReadyTimeout bounds the wait. When it expires, the process group gets
// SIGKILL and the exit counts as a crash.
//
// # Restarts and crash loops
//
// Every exit that the supervisor did not request is a crash, whatever the
// exit status. An error or panic in BeforeStart or in the start itself is a
// crash too. A crashed service restarts after a delay that starts at
// Options.BackoffMin and doubles with each consecutive crash up to
// BackoffMax, with ±20% jitter. A service that was ready for longer than
// BackoffMax before it exited starts over at BackoffMin. After
// CrashLoopLimit restarts within CrashLoopWindow, the next crash marks the
// service failed for good. Its last 20 output lines then go to the console,
// and every service that depends on it is stopped and marked failed too.
// Nothing restarts a failed service.
//
// # Processes
//
// Each child runs in a process group of its own, with standard input from
// /dev/null and standard output and error on one pipe that the supervisor
// reads line by line. Each line goes to Options.Console as "name: line" and
// into a ring of the service's last lines (Supervisor.Logs). Lines longer
// than 4096 bytes, not counting the line ending, are cut and end with
// " [truncated]". Signals go to the whole group, and when the
// child exits the rest of its group gets SIGKILL, so no helper it forked
// outlives it inside the group. A process that leaves the group (with
// setsid, for example) is not tracked.
//
// The supervisor learns exit statuses through Options.Start. The default
// uses exec.Cmd.Wait. A process that reaps every child itself, as PID 1
// does with wait4(-1), must pass a function that hands each child's status
// to the supervisor instead.
//
// # Stop
//
// Stop, or canceling Run's context, stops every service in reverse
// dependency order. Each service gets its StopSignal once none of its
// dependents runs, and SIGKILL after its StopTimeout. No process starts
// after Stop begins, except one whose start was already past BeforeStart,
// and that one is stopped at once. Run returns once every child has
// exited, its output has been read and the supervisor's workers have
// ended.
//
// # Failure containment
//
// A panic in the supervisor's own code or in a caller's BeforeStart or Start
// is recovered and logged. A panic in BeforeStart or Start is a failed
// start. A panic while the supervisor handles an event of a service stops
// that service and its dependents and marks them failed. The other services
// carry on.
//
// Events go both to Options.Console, as lines that start with
// "supervise: ", and to Options.Logger, as records with the key "service".
// A restart line reads, for example:
//
//	supervise: storage exited (killed by signal 9); restart 2 in 1.1s
package supervise
