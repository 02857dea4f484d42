// Command sockfarm holds about N idle loopback TCP sockets for benchmarks,
// spread over child processes as testnet.FarmSpecs splits them. It prints
// "ready" and holds them until stdin closes.
//
//	ip netns exec BENCH sockfarm -sockets 40000
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
	sockets := flag.Int("sockets", 40000, "sockets to hold, about")
	flag.Parse()
	if spec, ok := os.LookupEnv("SOCKFARM_SPEC"); ok {
		testnet.RunAgent(spec)
		return
	}
	specs := testnet.FarmSpecs(*sockets)
	stdin := make([]io.Closer, 0, len(specs))
	for _, s := range specs {
		spec, _ := json.Marshal(s)
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
