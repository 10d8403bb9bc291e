//go:build linux

package supervise

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// withDefaults checks opts and fills in the defaults for its zero values.
func withDefaults(opts Options) (Options, error) {
	switch {
	case opts.RingLines < 0:
		return opts, fmt.Errorf("invalid RingLines %d: must not be negative", opts.RingLines)
	case opts.BackoffMin < 0:
		return opts, fmt.Errorf("invalid BackoffMin %s: must not be negative", opts.BackoffMin)
	case opts.BackoffMax < 0:
		return opts, fmt.Errorf("invalid BackoffMax %s: must not be negative", opts.BackoffMax)
	case opts.CrashLoopWindow < 0:
		return opts, fmt.Errorf("invalid CrashLoopWindow %s: must not be negative", opts.CrashLoopWindow)
	}

	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RingLines == 0 {
		opts.RingLines = defaultRingLines
	}
	if opts.BackoffMin == 0 {
		opts.BackoffMin = defaultBackoffMin
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = max(defaultBackoffMax, opts.BackoffMin)
	}
	if opts.BackoffMin > opts.BackoffMax {
		return opts, fmt.Errorf("invalid BackoffMin %s: greater than BackoffMax %s", opts.BackoffMin, opts.BackoffMax)
	}
	if opts.CrashLoopLimit == 0 {
		opts.CrashLoopLimit = defaultCrashLoopLimit
	}
	if opts.CrashLoopWindow == 0 {
		opts.CrashLoopWindow = defaultCrashLoopWindow
	}
	if opts.Start == nil {
		opts.Start = startAndWait
	}
	return opts, nil
}

// buildGraph validates the services and links each to its dependencies and
// dependents. It returns them in the given order and in a topological
// order, which is described at topologicalOrder.
func buildGraph(specs []Service) (list, order []*service, err error) {
	byName := make(map[string]*service, len(specs))
	for _, spec := range specs {
		if err := validateService(spec); err != nil {
			return nil, nil, err
		}
		if _, dup := byName[spec.Name]; dup {
			return nil, nil, fmt.Errorf("duplicate service name %q", spec.Name)
		}
		svc := &service{Service: copyService(spec)}
		byName[spec.Name] = svc
		list = append(list, svc)
	}

	for _, svc := range list {
		for _, name := range svc.After {
			dep, ok := byName[name]
			switch {
			case !ok:
				return nil, nil, fmt.Errorf("service %q: After names unknown service %q", svc.Name, name)
			case dep == svc:
				return nil, nil, fmt.Errorf("service %q: After names the service itself", svc.Name)
			case slices.Contains(svc.deps, dep):
				continue
			}
			svc.deps = append(svc.deps, dep)
		}
	}

	order, err = topologicalOrder(list)
	if err != nil {
		return nil, nil, err
	}
	for _, svc := range list {
		svc.dependents = transitiveDependents(svc, list)
	}
	return list, order, nil
}

// maxSignal is the highest signal number, SIGRTMAX. Linux defines it as
// _NSIG, which is 64 on x86-64 and arm64 (asm-generic/signal.h).
const maxSignal = 64

func validateService(spec Service) error {
	if spec.Name == "" {
		return fmt.Errorf("service with Path %q: missing Name", spec.Path)
	}
	for _, r := range spec.Name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("invalid service name %q: use only ASCII letters, digits, '.', '_' and '-'", spec.Name)
		}
	}

	switch {
	case spec.Path == "":
		return fmt.Errorf("service %q: missing Path", spec.Name)
	case spec.ReadyTimeout < 0:
		return fmt.Errorf("service %q: invalid ReadyTimeout %s: must not be negative", spec.Name, spec.ReadyTimeout)
	case spec.StopTimeout < 0:
		return fmt.Errorf("service %q: invalid StopTimeout %s: must not be negative", spec.Name, spec.StopTimeout)
	case spec.StopSignal < 0 || spec.StopSignal > maxSignal:
		return fmt.Errorf("service %q: invalid StopSignal %d: must be from 1 to %d, or 0 for SIGTERM", spec.Name, int(spec.StopSignal), maxSignal)
	}
	return nil
}

// copyService applies the per-service defaults and copies the slices, so a
// caller that changes its Service later does not change the supervisor's.
func copyService(spec Service) Service {
	spec.Args = slices.Clone(spec.Args)
	spec.After = slices.Clone(spec.After)

	// Nil keeps its meaning (the supervisor's environment), which is
	// resolved at each start.
	if spec.Env != nil {
		spec.Env = slices.Clone(spec.Env)
	}
	if spec.StopSignal == 0 {
		spec.StopSignal = unix.SIGTERM
	}
	if spec.StopTimeout == 0 {
		spec.StopTimeout = defaultStopTimeout
	}
	return spec
}

// topologicalOrder returns the services with every dependency before its
// dependents, or an error naming a cycle. The order is depth-first. The
// services come in the order of list, each one preceded by those of its
// direct and indirect dependencies that are not in the result yet.
func topologicalOrder(list []*service) ([]*service, error) {
	const (
		unvisited = iota
		visiting
		visited
	)
	mark := make(map[*service]int, len(list))
	order := make([]*service, 0, len(list))
	var path []string

	var visit func(svc *service) error
	visit = func(svc *service) error {
		switch mark[svc] {
		case visited:
			return nil
		case visiting:
			start := slices.Index(path, svc.Name)
			cycle := append(slices.Clone(path[start:]), svc.Name)
			return fmt.Errorf("dependency cycle in After: %s", strings.Join(cycle, " -> "))
		}
		mark[svc] = visiting
		path = append(path, svc.Name)
		for _, dep := range svc.deps {
			if err := visit(dep); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		mark[svc] = visited
		order = append(order, svc)
		return nil
	}

	for _, svc := range list {
		if err := visit(svc); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// transitiveDependents returns every service that depends on svc directly or
// through others, in the order of list.
func transitiveDependents(svc *service, list []*service) []*service {
	reached := map[*service]bool{svc: true}
	for changed := true; changed; {
		changed = false
		for _, other := range list {
			if reached[other] {
				continue
			}
			for _, dep := range other.deps {
				if reached[dep] {
					reached[other] = true
					changed = true
					break
				}
			}
		}
	}

	var dependents []*service
	for _, other := range list {
		if other != svc && reached[other] {
			dependents = append(dependents, other)
		}
	}
	return dependents
}
