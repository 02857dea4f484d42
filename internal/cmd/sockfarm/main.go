// Command sockfarm holds many idle TCP connections for benchmarks: it
// listens on 127.0.0.1 ports 9000+i and opens N connections to each of its
// own listeners, one process per listener so no process needs more than
// 2N descriptors. It prints "ready" and holds them until stdin closes.
//
//	ip netns exec BENCH sockfarm -procs 3 -n 6700
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/tcpvet/tcpvet/internal/testnet"
)

func main() {
	procs := flag.Int("procs", 3, "processes, each with its own listener")
	n := flag.Int("n", 6700, "connections each process opens to its listener")
	flag.Parse()
	if spec, ok := os.LookupEnv("SOCKFARM_SPEC"); ok {
		testnet.RunAgent(spec)
		return
	}
	stdin := make([]io.Closer, 0, *procs)
	for i := range *procs {
		addr := fmt.Sprintf("127.0.0.1:%d", 9000+i)
		spec, _ := json.Marshal(testnet.Spec{
			Listen: []testnet.Listener{{Name: "l", Addr: addr, Mode: testnet.Hold}},
			Bulk:   map[string]int{addr: *n},
		})
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "SOCKFARM_SPEC="+string(spec))
		cmd.Stderr = os.Stderr
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "sockfarm:", err)
			os.Exit(1)
		}
		if line, _ := bufio.NewReader(out).ReadString('\n'); !strings.Contains(line, `"ready"`) {
			fmt.Fprintln(os.Stderr, "sockfarm: child did not get ready")
			os.Exit(1)
		}
		stdin = append(stdin, in)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range stdin {
		c.Close()
	}
}
