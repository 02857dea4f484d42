package netns

import (
	"io/fs"
	"os"
	"runtime"
	"syscall"
	"testing"
)

// threadNetns returns the network namespace inode of the calling thread.
func threadNetns(t *testing.T) uint64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fi, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		t.Error(err)
		return 0
	}
	return inode(fi)
}

func inode(fi fs.FileInfo) uint64 { return fi.Sys().(*syscall.Stat_t).Ino }
