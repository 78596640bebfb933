// Package proc identifies a process well enough to tell, from a lock or lease
// file it left, whether it still runs: host name, pid and the kernel's start
// time of that pid (so a pid reused by an unrelated process is not mistaken
// for the holder).
package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ID names one process instance.
type ID struct {
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// Start is the process's start time in clock ticks since boot
	// (/proc/PID/stat field 22); 0 where unknown (not Linux).
	Start uint64 `json:"start_ticks,omitempty"`
}

// Self returns this process's ID.
func Self() ID {
	host, _ := os.Hostname()
	pid := os.Getpid()
	st, _ := StartTicks(pid)
	return ID{Host: host, PID: pid, Start: st}
}

func (id ID) String() string {
	return fmt.Sprintf("pid %d on %s", id.PID, id.Host)
}

// StartTicks reads a process's start time from /proc/PID/stat.
func StartTicks(pid int) (uint64, error) {
	_, st, err := stat(pid)
	return st, err
}

// stat reads a process's state letter and start time from /proc/PID/stat.
func stat(pid int) (byte, uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields are
	// counted from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, errors.New("proc stat: no ')'")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("proc stat: short")
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return f[0][0], st, err
}

// Gone reports whether id is known not to run any more: on this host, its pid
// is gone, or the pid now belongs to a process that started at another time.
// A process on another host cannot be checked (false, ""); callers fall back
// on a timeout for those.
func (id ID) Gone() (bool, string) {
	self := Self()
	if id.Host != self.Host || id.PID <= 0 {
		return false, ""
	}
	if id.PID == self.PID {
		if id.Start != 0 && self.Start != 0 && id.Start != self.Start {
			return true, fmt.Sprintf("pid %d was reused (started at tick %d, holder at %d)", id.PID, self.Start, id.Start)
		}
		return false, ""
	}
	if err := syscall.Kill(id.PID, 0); errors.Is(err, syscall.ESRCH) {
		return true, fmt.Sprintf("process %d is gone", id.PID)
	}
	state, st, err := stat(id.PID)
	if err != nil {
		return false, ""
	}
	// A process killed (SIGKILL) whose parent has not reaped it yet is a
	// zombie: its pid answers kill(0) but it will never run again.
	if state == 'Z' || state == 'X' {
		return true, fmt.Sprintf("process %d has exited (zombie)", id.PID)
	}
	if id.Start != 0 && st != id.Start {
		return true, fmt.Sprintf("pid %d now belongs to another process (started at tick %d, holder at %d)", id.PID, st, id.Start)
	}
	return false, ""
}
