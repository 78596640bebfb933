package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"cacheclip/internal/proc"
)

// DefaultLeaseTimeout is how long a shard's lease outlives its holder's last
// heartbeat before another process may take it over.
const DefaultLeaseTimeout = time.Minute

// LeaseName is the lease file of one shard of an output dataset.
func LeaseName(s Partition) string { return "_lease-" + s.norm().Tag() + ".json" }

// LeaseInfo is what a lease file holds. The heartbeat is the file's
// modification time, refreshed by the holder every quarter of the timeout, so
// the file is written once and only touched afterwards.
type LeaseInfo struct {
	proc.ID
	Token    string    `json:"token"` // tells this holder from a later one
	Started  time.Time `json:"started"`
	TimeoutS float64   `json:"timeout_s"`
}

// LeaseHeldError says that another process holds (or has taken over) the
// lease of the shard; ExitCodeOf maps it to ExitLeaseHeld.
type LeaseHeldError struct {
	Path      string
	Holder    LeaseInfo
	Heartbeat time.Time // the holder's last heartbeat
	Lost      bool      // this process held the lease and lost it
}

func (e *LeaseHeldError) Error() string {
	who := "another process"
	if e.Holder.PID > 0 {
		who = fmt.Sprintf("%s (started %s)", e.Holder.ID, e.Holder.Started.Format(time.RFC3339))
	}
	if e.Lost {
		return fmt.Sprintf("lease %s was taken over by %s after this process missed its heartbeats; stopping without committing more", e.Path, who)
	}
	return fmt.Sprintf("lease %s is held by %s, last heartbeat %s ago; one writer per shard: wait for it, or for its lease to go stale (timeout %gs)",
		e.Path, who, time.Since(e.Heartbeat).Round(100*time.Millisecond), e.Holder.TimeoutS)
}

// Lease makes its holder the only writer of one shard of an output dataset.
// It is taken with O_EXCL; a lease whose holder is gone (same host) or whose
// heartbeat is older than the timeout is taken over. The holder refreshes the
// heartbeat in the background and must call Check before each commit: a
// holder that was paused (SIGSTOP, a frozen VM) for longer than half the
// timeout may have been replaced, and so stops (fencing).
type Lease struct {
	path    string
	info    LeaseInfo
	timeout time.Duration
	log     *slog.Logger

	mu       sync.Mutex
	lastBeat time.Time // when this process last confirmed and refreshed the lease
	lost     error
	stop     chan struct{}
	done     chan struct{}
}

// AcquireLease takes the lease of shard sh in dir, or returns a
// *LeaseHeldError naming the live holder.
func AcquireLease(dir string, sh Partition, timeout time.Duration, log *slog.Logger) (*Lease, error) {
	if timeout <= 0 {
		timeout = DefaultLeaseTimeout
	}
	if log == nil {
		log = slog.Default()
	}
	l := &Lease{path: filepath.Join(dir, LeaseName(sh)), timeout: timeout, log: log,
		info: LeaseInfo{ID: proc.Self(), Token: randHex() + randHex(), Started: time.Now().UTC(), TimeoutS: timeout.Seconds()}}
	body, err := json.MarshalIndent(&l.info, "", " ")
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		err := createExclusive(l.path, body)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || attempt >= 3 {
			return nil, fmt.Errorf("lease %s: %w", l.path, err)
		}
		held, err := l.takeOver()
		if err != nil {
			return nil, err
		}
		if held != nil {
			return nil, held
		}
	}
	l.lastBeat = time.Now()
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go l.heartbeat()
	return l, nil
}

// createExclusive creates path with body, failing with os.ErrExist when it
// exists. The body is written to a temporary file first and hard-linked into
// place, so no reader ever sees the file empty or half written.
func createExclusive(path string, body []byte) error {
	dir := filepath.Dir(path)
	tmp := tmpName(dir, "lease", filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := f.Write(body); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// readLease returns the lease file's content and heartbeat. A file that does
// not parse (damaged by hand) reads as held by an unknown process, heartbeat =
// mtime, so it is taken over once older than the timeout.
func readLease(path string) (LeaseInfo, time.Time, error) {
	st, err := os.Stat(path)
	if err != nil {
		return LeaseInfo{}, time.Time{}, err
	}
	var info LeaseInfo
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &info)
	}
	return info, st.ModTime(), nil
}

// takeOver removes the lease file when its holder is gone or stale. It returns
// a *LeaseHeldError when the holder is live. Two processes taking over at once
// are serialised by a guard file created with O_EXCL, and the lease is
// re-read under the guard, so only one of them removes the stale lease.
func (l *Lease) takeOver() (*LeaseHeldError, error) {
	info, beat, err := readLease(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // released meanwhile: retry the create
	}
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", l.path, err)
	}
	why := staleWhy(info, beat, l.timeout)
	if why == "" {
		return &LeaseHeldError{Path: l.path, Holder: info, Heartbeat: beat}, nil
	}
	guard := l.path + ".takeover"
	if err := createExclusive(guard, []byte(l.info.Token)); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lease %s: %w", guard, err)
		}
		// Another process is taking over. Its guard is only held for a few
		// file operations; one older than the timeout was left by a crash.
		if st, serr := os.Stat(guard); serr == nil && time.Since(st.ModTime()) > l.timeout {
			os.Remove(guard)
			return nil, nil
		}
		return &LeaseHeldError{Path: l.path, Holder: info, Heartbeat: beat}, nil
	}
	defer os.Remove(guard)
	again, beat2, err := readLease(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", l.path, err)
	}
	if again.Token != info.Token || !beat2.Equal(beat) {
		return &LeaseHeldError{Path: l.path, Holder: again, Heartbeat: beat2}, nil
	}
	l.log.Warn("taking over a stale lease", "lease", l.path, "holder_host", info.Host, "holder_pid", info.PID,
		"holder_started", info.Started, "last_heartbeat", beat.UTC(), "why", why)
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lease %s: %w", l.path, err)
	}
	return nil, nil
}

// staleWhy says why a lease may be taken over ("" when it may not).
func staleWhy(info LeaseInfo, beat time.Time, timeout time.Duration) string {
	if age := time.Since(beat); age > timeout {
		return fmt.Sprintf("no heartbeat for %v (timeout %v)", age.Round(time.Millisecond), timeout)
	}
	if gone, why := info.ID.Gone(); gone {
		return why
	}
	return ""
}

func (l *Lease) heartbeat() {
	defer close(l.done)
	t := time.NewTicker(l.timeout / 4)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if err := l.beat(); err != nil {
				l.log.Error("lease lost", "lease", l.path, "error", err)
				return
			}
		}
	}
}

// beat confirms the lease is still ours and refreshes its heartbeat.
func (l *Lease) beat() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	if err := l.ownedLocked(); err != nil {
		return err
	}
	now := time.Now()
	if err := os.Chtimes(l.path, now, now); err != nil {
		return fmt.Errorf("lease %s: heartbeat: %w", l.path, err)
	}
	l.lastBeat = now
	return nil
}

// ownedLocked checks that the lease file is still this holder's and that the
// holder has not been silent long enough for a takeover to be possible.
func (l *Lease) ownedLocked() error {
	info, beat, err := readLease(l.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		l.lost = &LeaseHeldError{Path: l.path, Lost: true}
	case err != nil:
		return fmt.Errorf("lease %s: %w", l.path, err)
	case info.Token != l.info.Token:
		l.lost = &LeaseHeldError{Path: l.path, Holder: info, Heartbeat: beat, Lost: true}
	case time.Since(l.lastBeat) > l.timeout/2:
		// Silent for long enough that another process may be taking over
		// right now: committing could race its recovery.
		l.lost = &LeaseHeldError{Path: l.path, Holder: info, Heartbeat: beat, Lost: true}
	}
	return l.lost
}

// Check returns a *LeaseHeldError (Lost) when this process may no longer
// write: call it before every commit. On success the heartbeat is refreshed,
// so the next half timeout is safe to write in.
func (l *Lease) Check() error { return l.beat() }

// Release stops the heartbeat and removes the lease file if it is still ours.
func (l *Lease) Release() {
	if l == nil {
		return
	}
	select {
	case <-l.stop:
		return // released already
	default:
	}
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return
	}
	if info, _, err := readLease(l.path); err == nil && info.Token == l.info.Token {
		os.Remove(l.path)
	}
	l.lost = errors.New("lease released")
}
