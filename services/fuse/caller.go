package fusefs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// groupCacheTTL is how long the supplementary groups read for a thread are
// reused. It bounds how long a process that called setgroups(2) still acts
// with its old groups.
const groupCacheTTL = time.Second

// groupCacheMax is the number of entries above which expired ones are
// dropped.
const groupCacheMax = 4096

type groupKey struct {
	pid, uid, gid uint32
}

type groupEntry struct {
	groups  []uint32
	expires time.Time
}

// groupCache reads and caches the supplementary groups of calling threads.
// The uid and gid are part of the key, so a thread that changed them is
// read again at once.
type groupCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[groupKey]groupEntry
	read    func(pid uint32) ([]uint32, error) // readProcGroups outside tests
}

func newGroupCache(ttl time.Duration) *groupCache {
	return &groupCache{ttl: ttl, entries: make(map[groupKey]groupEntry), read: readProcGroups}
}

// lookup returns the supplementary groups of thread pid, or nil when pid is
// 0 (a request from the kernel itself) or its status cannot be read. The
// returned slice must not be modified.
func (c *groupCache) lookup(pid, uid, gid uint32) []uint32 {
	if pid == 0 {
		return nil
	}
	key := groupKey{pid, uid, gid}
	now := time.Now()

	c.mu.Lock()
	entry, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(entry.expires) {
		return entry.groups
	}

	groups, err := c.read(pid)
	if err != nil {
		// The thread may have exited already; the request then runs with
		// its primary group only. Failures are not cached.
		return nil
	}

	c.mu.Lock()
	if len(c.entries) >= groupCacheMax {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
	}
	c.entries[key] = groupEntry{groups: groups, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return groups
}

// readProcGroups reads the "Groups:" line of /proc/PID/status. PID is a
// thread id as FUSE reports it, and /proc resolves thread ids too.
func readProcGroups(pid uint32) ([]uint32, error) {
	data, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return nil, err
	}
	return parseStatusGroups(data)
}

// parseStatusGroups extracts the group ids of the "Groups:" line of a
// /proc/PID/status file.
func parseStatusGroups(status []byte) ([]uint32, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("Groups:"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		groups := make([]uint32, 0, len(fields))
		for _, field := range fields {
			gid, err := strconv.ParseUint(string(field), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("invalid group id %q in /proc status: %w", field, err)
			}
			groups = append(groups, uint32(gid))
		}
		return groups, nil
	}
	return nil, fmt.Errorf("no Groups line in /proc status")
}
