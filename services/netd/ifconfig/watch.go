package ifconfig

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"time"
)

// watchState is the state that Poll keeps between calls.
type watchState struct {
	mu         sync.Mutex // serializes Poll
	read       bool       // a read has happened
	missing    bool
	data       []byte
	readErrors repeatLog

	// configError is guarded by Manager.mu, because Status reads it.
	configError string
}

// Watch calls Poll now and then every PollInterval until ctx ends or the
// Manager is closed. The file is polled because the block tree's FUSE
// mount does not deliver an inotify event for every change. Watch returns
// ctx.Err(), or nil after Close.
func (m *Manager) Watch(ctx context.Context) error {
	m.log.Info("watching interface configuration", "path", m.opts.Path, "poll", m.opts.PollInterval)
	ticker := time.NewTicker(m.opts.PollInterval)
	defer ticker.Stop()
	for {
		m.Poll()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// Poll reads the configuration file once. When its contents changed since
// the last Poll it parses and applies them. A file that does not parse
// changes nothing: its error is logged once and shown in Status, and the
// last good configuration stays applied. A missing file means no
// interfaces are configured. When the contents did not change but an
// interface has an error (a link not plugged in yet, say), Poll applies
// the current configuration again.
func (m *Manager) Poll() {
	w := &m.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if m.ctx.Err() != nil {
		return
	}

	data, err := readLimited(m.opts.Path, MaxFileSize)
	missing := errors.Is(err, os.ErrNotExist)
	if err != nil && !missing {
		if w.readErrors.note(err) {
			m.log.Error("interface configuration not read", "path", m.opts.Path, "error", err, "repeats", w.readErrors.count)
		}
		return
	}
	w.readErrors.note(nil)

	changed := !w.read || missing != w.missing || !bytes.Equal(data, w.data)
	w.read, w.missing, w.data = true, missing, data
	if !changed {
		if cfg := m.retryConfig(); cfg != nil {
			// Apply logs and records each interface's errors itself.
			_ = m.Apply(cfg)
		}
		return
	}

	cfg := &Config{}
	if missing {
		m.log.Info("interface configuration file missing: no interfaces configured", "path", m.opts.Path)
	} else {
		cfg, err = Parse(m.opts.Path, data)
		if err != nil {
			m.setConfigError(err.Error())
			m.log.Error("interface configuration rejected; the last valid one stays applied", "path", m.opts.Path, "error", err)
			return
		}
		m.log.Info("interface configuration read", "path", m.opts.Path, "interfaces", len(cfg.Interfaces))
	}
	m.setConfigError("")
	_ = m.Apply(cfg)
}

func (m *Manager) setConfigError(msg string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watch.configError = msg
}

// retryConfig returns the configuration to apply again because an
// interface has an error, or nil.
func (m *Manager) retryConfig() *Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range m.ifaces {
		if st.status.LastError != "" {
			return m.cfg
		}
	}
	return nil
}
