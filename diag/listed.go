package diag

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/tcpvet/tcpvet/netns"
)

// scanListed is scanProcesses for processes already known to be in ns (a
// sweep listed every process's namespace once): it reads their descriptors
// without listing /proc again, which a sweep would otherwise do once per
// namespace. A listed process that has exited or moved since is skipped;
// one that started since is not seen.
func scanListed(procRoot string, ns *netns.NS, pids []int) procScan {
	scan := procScan{owners: make(map[uint32][]Process)}
	var held []heldSocket
	var names, links []byte
	for _, pid := range pids {
		dir := procRoot + "/" + strconv.Itoa(pid)
		fi, err := os.Stat(dir + "/ns/net")
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				scan.hidden = append(scan.hidden, pid)
			}
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Ino != ns.Inode || st.Dev != ns.Dev() {
			continue
		}
		scan.pids = append(scan.pids, pid)
		var ok bool
		if held, names, links, ok = scanFDs(dir, pid, held, names, links); !ok {
			scan.hidden = append(scan.hidden, pid)
		}
	}
	scan.owners = ownersOf(held)
	return scan
}
