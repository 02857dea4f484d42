// Command grpcpeer is a real gRPC server or client for tcpvet's tests: the
// server answers the standard health service; the client dials it, makes
// one call, prints its connection's local address, and then sits idle with
// grpc-go's own keepalive pings (or none) until its standard input closes.
//
//	grpcpeer server -listen :7443 [-cert c.pem -key k.pem] [-tcp-keepalive -1s]
//	grpcpeer client -to 198.18.4.2:7443 [-ping 10s] [-ca c.pem]
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "grpcpeer: want server or client")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = server(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcpeer:", err)
		os.Exit(1)
	}
}

func server(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	listen := fs.String("listen", ":7443", "address to listen on")
	cert := fs.String("cert", "", "TLS certificate (PEM); none serves h2c")
	key := fs.String("key", "", "TLS key (PEM)")
	probe := fs.Duration("tcp-keepalive", 0, "TCP keepalive of accepted connections: 0 is Go's default (probes after 15 s idle), negative turns it off")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := []grpc.ServerOption{
		// Clients may ping as often as every 5 s, even without a call
		// in flight; grpc-go's default (5 min) would send them away.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if *cert != "" {
		c, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(&c)))
	}
	lc := net.ListenConfig{KeepAlive: *probe}
	ln, err := lc.Listen(context.Background(), "tcp", *listen)
	if err != nil {
		return err
	}
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	fmt.Println("ready", ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		s.Stop()
	}()
	return s.Serve(ln)
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	to := fs.String("to", "", "server address")
	ping := fs.Duration("ping", 0, "keepalive ClientParameters.Time; 0 sends no pings")
	ca := fs.String("ca", "", "CA certificate (PEM) to trust; none dials h2c")
	if err := fs.Parse(args); err != nil {
		return err
	}
	local := make(chan net.Addr, 1)
	opts := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			// As grpc-go dials since 1.61: SO_KEEPALIVE on, with the
			// system's timings (7200 s unless tuned).
			d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				select {
				case local <- c.LocalAddr():
				default:
				}
			}
			return c, err
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("no certificate in " + *ca)
		}
		opts[1] = grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "grpcpeer"}))
	}
	if *ping > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: *ping, Timeout: 5 * time.Second, PermitWithoutStream: true}))
	}
	conn, err := grpc.NewClient("passthrough:///"+*to, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		return err
	}
	fmt.Println("ready", <-local)
	io.Copy(io.Discard, os.Stdin)
	return nil
}
