package testnet

import (
	"strconv"
)

// farmConnsPerProcess keeps each farm process at 14,000 descriptors, under
// the 20,000 hard limit of the machines this runs on.
const farmConnsPerProcess = 7000

// FarmSpecs splits about n idle loopback sockets into agent specs, one per
// process: each listens on its own 127.0.0.1 port from 9000 up and holds
// connections to itself (two sockets each).
func FarmSpecs(n int) []Spec {
	var specs []Spec
	for i := 0; n > 0; i++ {
		c := min(farmConnsPerProcess, (n+1)/2)
		addr := "127.0.0.1:" + strconv.Itoa(9000+i)
		specs = append(specs, Spec{
			Listen: []Listener{{Name: "l", Addr: addr, Mode: Hold}},
			Bulk:   map[string]int{addr: c},
		})
		n -= 2 * c
	}
	return specs
}
