package diag

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/tcpvet/tcpvet/netns"
)

// Process is a process holding a socket through one of its file descriptors.
type Process struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	FD   int    `json:"fd"`
}

// procScan is what a scan of /proc found about the processes of one namespace.
type procScan struct {
	// owners maps a socket inode to every (process, fd) holding it.
	owners map[uint32][]Process
	// pids are the processes that live in the namespace.
	pids []int
	// hidden are the processes whose namespace or descriptors could not be
	// read.
	hidden []int
}

// scanProcesses finds the processes of namespace ns
// under procRoot and the socket inodes their descriptors hold. Processes
// that vanish mid-scan are skipped: a snapshot of a churning target is still
// a snapshot.
func scanProcesses(procRoot string, ns *netns.NS) procScan {
	scan := procScan{owners: make(map[uint32][]Process)}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return scan
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := procRoot + "/" + e.Name()
		fi, err := os.Stat(dir + "/ns/net")
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				scan.hidden = append(scan.hidden, pid)
			}
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Ino != ns.Inode || st.Dev != ns.Dev() {
			continue
		}
		scan.pids = append(scan.pids, pid)
		if !scanFDs(dir, pid, scan.owners) {
			scan.hidden = append(scan.hidden, pid)
		}
	}
	return scan
}

// scanFDs adds the sockets held by process pid to owners. It reports false
// when the descriptor table could not be read at all.
func scanFDs(dir string, pid int, owners map[uint32][]Process) bool {
	fdDir := dir + "/fd"
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) // it exited: nothing hidden
	}
	var comm string
	for _, e := range entries {
		link, err := os.Readlink(fdDir + "/" + e.Name())
		if err != nil {
			continue
		}
		inode, ok := socketInode(link)
		if !ok {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm == "" {
			comm = readComm(dir)
		}
		owners[inode] = append(owners[inode], Process{PID: pid, Comm: comm, FD: fd})
	}
	return true
}

// socketInode parses the "socket:[12345]" target of a descriptor link.
func socketInode(link string) (uint32, bool) {
	rest, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(rest, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// describeProcesses counts pids and names the first few, so that a user
// told some processes were out of reach knows which.
func describeProcesses(procRoot string, pids []int) string {
	const named = 3
	var b strings.Builder
	if len(pids) == 1 {
		b.WriteString("1 process")
	} else {
		fmt.Fprintf(&b, "%d processes", len(pids))
	}
	for i, pid := range pids[:min(len(pids), named)] {
		sep := ", "
		if i == 0 {
			sep = " ("
		}
		fmt.Fprintf(&b, "%spid %d %s", sep, pid, readComm(procRoot+"/"+strconv.Itoa(pid)))
	}
	if len(pids) > named {
		fmt.Fprintf(&b, " and %d more", len(pids)-named)
	}
	if len(pids) > 0 {
		b.WriteString(")")
	}
	return b.String()
}

func readComm(dir string) string {
	b, err := os.ReadFile(dir + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSuffix(string(b), "\n")
}
