package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// subscribeTimeout bounds the wait for the storage daemon's reply to a
// subscribe at mount time. The daemon replies at once, and only a daemon
// that does not know the message leaves it without a reply. The mount
// then uses ShortTimeout.
const subscribeTimeout = 5 * time.Second

// cacheTimeouts decides how long the kernel may cache names, attributes and
// failed lookups. With change notifications the kernel caches for the
// configured timeouts and caches failed lookups as long as names, but for
// at most DefaultTimeout. Without them, and for a while after
// notifications were lost, it caches for at most ShortTimeout and does not
// cache failed lookups.
type cacheTimeouts struct {
	entry, attr time.Duration // as configured
	notified    atomic.Bool   // the file system reports changes to this mount
	// shortUntil is the time, in nanoseconds since the epoch, until which
	// replies use ShortTimeout because notifications were lost.
	shortUntil atomic.Int64
}

// entryOut returns the timeouts for a name and its attributes.
func (t *cacheTimeouts) entryOut() (entry, attr time.Duration) {
	if t.short() {
		return min(t.entry, ShortTimeout), min(t.attr, ShortTimeout)
	}
	return t.entry, t.attr
}

// negative returns how long the kernel may remember that a name does not
// exist, 0 for not at all.
func (t *cacheTimeouts) negative() time.Duration {
	if t.short() {
		return 0
	}
	return min(t.entry, DefaultTimeout)
}

func (t *cacheTimeouts) short() bool {
	if !t.notified.Load() {
		return true
	}
	until := t.shortUntil.Load()
	return until != 0 && time.Now().UnixNano() < until
}

// lost makes replies use ShortTimeout until every reply that used a
// timeout the server does not undo (knownNames) has expired in the kernel:
// attributes, failed lookups and names beyond maxKnownNames.
func (t *cacheTimeouts) lost() {
	t.shortUntil.Store(time.Now().Add(max(t.attr, min(t.entry, DefaultTimeout))).UnixNano())
}

// subscribe requests change notifications from fs and returns nil when it
// cannot report changes.
func subscribe(fs fsapi.FS, logger *slog.Logger) fsapi.Subscription {
	subscriber, ok := fs.(fsapi.Subscriber)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), subscribeTimeout)
	defer cancel()
	sub, err := subscriber.Subscribe(ctx)
	if err != nil {
		logger.Warn("the file system reports no changes, so the kernel caches names and attributes for only a short time", "timeout", ShortTimeout, "error", err)
		return nil
	}
	return sub
}

// followChanges invalidates the kernel's caches for every change that sub
// reports, until ctx ends. It runs in its own goroutine, never inside a
// request handler: an invalidation of a name waits for the kernel's lock
// on the directory, which a request in that directory holds until the
// server replies.
func (s *Server) followChanges(ctx context.Context, sub fsapi.Subscription, timeouts *cacheTimeouts) {
	for {
		changes, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				// Changes from now on go unreported.
				timeouts.notified.Store(false)
				s.logger.Warn("change notifications ended; the kernel now caches names and attributes for only a short time", "timeout", ShortTimeout, "error", err)
				if err := s.forgetAll(timeouts); err != nil {
					s.logger.Warn("invalidating the kernel's cache failed", "error", err)
				}
			}
			return
		}
		var failed int
		var firstErr error
		for _, c := range changes {
			if err := s.invalidate(c, timeouts); err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		if failed > 0 {
			s.logger.Warn("invalidating the kernel's cache failed", "failed", failed, "changes", len(changes), "error", firstErr)
		}
	}
}

// invalidate drops what the kernel caches for one change.
func (s *Server) invalidate(c fsapi.Change, timeouts *cacheTimeouts) error {
	switch c.Kind {
	case fsapi.ChangeEntry:
		s.raw.dirAttrs.drop(c.Ino)
		return s.InvalidateEntry(c.Ino, c.Name)
	case fsapi.ChangeAttr:
		s.raw.dirAttrs.drop(c.Ino)
		s.raw.noCap.changed(c.Ino)
		// A negative offset keeps the cached data.
		return notifyError("invalidate attributes", s.fuse.InodeNotify(uint64(c.Ino), -1, 0))
	case fsapi.ChangeData:
		return s.InvalidateInode(c.Ino)
	case fsapi.ChangeAll:
		s.logger.Warn("change notifications were lost; invalidating every name the kernel caches for long, and caching for only a short time until the rest has expired", "timeout", ShortTimeout)
		return s.forgetAll(timeouts)
	}
	return fmt.Errorf("unknown change kind %d from the file system", uint8(c.Kind))
}

// forgetAll invalidates every name that the kernel may cache for long, and
// the attributes of the inodes they lead to, after notifications were lost
// (fsapi.ChangeAll) or ended. Replies from then on use ShortTimeout for a
// while (cacheTimeouts.lost). It runs outside request handlers, like every
// invalidation of a name.
func (s *Server) forgetAll(timeouts *cacheTimeouts) error {
	s.raw.dirAttrs.dropAll()
	s.raw.noCap.changedAll()
	keys, inos := s.raw.names.takeAll(timeouts.lost)
	errs := []error{s.raw.invalidateNames(keys)}
	for _, ino := range inos {
		if err := notifyError("invalidate attributes", s.fuse.InodeNotify(uint64(ino), -1, 0)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
