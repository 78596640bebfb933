package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestGone(t *testing.T) {
	self := Self()
	if self.Start == 0 {
		t.Fatal("no start time for this process (is /proc mounted?)")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := ID{Host: self.Host, PID: cmd.Process.Pid, Start: 1}
	// A child that exited but is not reaped yet: a zombie.
	zc := exec.Command("true")
	if err := zc.Start(); err != nil {
		t.Fatal(err)
	}
	defer zc.Wait()
	zst, _ := StartTicks(zc.Process.Pid)
	for i := 0; i < 500; i++ {
		if s, _, _ := stat(zc.Process.Pid); s == 'Z' {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	parent := os.Getppid()
	pst, _ := StartTicks(parent)
	for _, c := range []struct {
		name string
		id   ID
		gone bool
	}{
		{"self", self, false},
		{"live parent", ID{Host: self.Host, PID: parent, Start: pst}, false},
		{"exited child", dead, true},
		{"zombie child", ID{Host: self.Host, PID: zc.Process.Pid, Start: zst}, true},
		{"reused pid", ID{Host: self.Host, PID: parent, Start: pst + 1}, true},
		{"self reused", ID{Host: self.Host, PID: self.PID, Start: self.Start + 1}, true},
		{"other host", ID{Host: self.Host + "-other", PID: cmd.Process.Pid}, false},
	} {
		if g, why := c.id.Gone(); g != c.gone {
			t.Errorf("%s: gone %v (%s), want %v", c.name, g, why, c.gone)
		}
	}
}
