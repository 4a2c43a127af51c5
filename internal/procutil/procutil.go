// Package procutil holds the small process and port helpers shared by the
// local platform and the test helpers: free loopback ports, the unprivileged
// user that database servers run as when tandem runs as root, and child
// processes that die with their parent.
package procutil

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Account is the OS user a child process runs as.
type Account struct {
	Name     string
	UID, GID uint32
	// Switch is true when the child must change to this user (we are root).
	Switch bool
}

// Unprivileged returns the account database servers run as. PostgreSQL
// refuses to run as root, so as root this is the "postgres" user that
// Debian's package creates (or "nobody" without it); otherwise it is the
// current user.
func Unprivileged() (Account, error) {
	if os.Geteuid() != 0 {
		return Account{Name: "current", UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return Account{Name: name, UID: uint32(uid), GID: uint32(gid), Switch: true}, nil
	}
	return Account{}, errors.New("running as root and found neither a \"postgres\" nor a \"nobody\" user to run PostgreSQL as; install Debian's postgresql package (it creates the postgres user) or run tandem as an ordinary user")
}

// Reachable reports whether the account can traverse every directory
// leading to path (PostgreSQL's data directory must be reachable by it).
func (a Account) Reachable(path string) bool {
	if !a.Switch {
		return true
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return false
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		var ok bool
		switch {
		case st.Uid == a.UID:
			ok = mode&0o100 != 0
		case st.Gid == a.GID:
			ok = mode&0o010 != 0
		default:
			ok = mode&0o001 != 0
		}
		if !ok {
			return false
		}
		if dir == "/" {
			return true
		}
	}
}

// Chown gives path (recursively) to the account when it is switched to.
func (a Account) Chown(path string) error {
	if !a.Switch {
		return nil
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(a.UID), int(a.GID))
	})
}

// Prepare sets cmd to run as the account, in its own process group, and to
// be killed if this process dies, so a crashed platform leaves no orphans.
func (a Account) Prepare(cmd *exec.Cmd) {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if a.Switch {
		attr.Credential = &syscall.Credential{Uid: a.UID, Gid: a.GID, Groups: []uint32{}}
	}
	cmd.SysProcAttr = attr
}

// Alive reports whether a process with this pid exists.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Proc is a started child process whose end is observed once: the shared
// lifecycle of the database and cache servers.
type Proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// StartProc starts cmd and watches for its end.
func StartProc(cmd *exec.Cmd) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// Pid returns the process id, or 0 for a nil Proc.
func (p *Proc) Pid() int {
	if p == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited is closed when the process ends (at once for a nil Proc).
func (p *Proc) Exited() <-chan struct{} {
	if p == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.exited
}

// Err is how the process ended (valid once Exited is closed).
func (p *Proc) Err() error { return p.err }

// Stopped reports whether the process has ended (or never started).
func (p *Proc) Stopped() bool {
	select {
	case <-p.Exited():
		return true
	default:
		return false
	}
}

// Stop sends sig and kills the process group if it has not ended within
// the timeout.
func (p *Proc) Stop(sig syscall.Signal, timeout time.Duration) {
	if p.Stopped() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill()
	}
}

// Kill ends the process group at once, like a crash.
func (p *Proc) Kill() {
	if p.Stopped() {
		return
	}
	// Children that made sessions of their own (PostgreSQL's backends do)
	// are not in the process group; found before the kill, while they are
	// still the process's children, they die with it even when stopped.
	kids := Descendants(p.cmd.Process.Pid)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	<-p.exited
}

// Descendants lists the processes below pid (children, their children, and
// so on), from /proc.
func Descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			children[ppid] = append(children[ppid], child)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
