// Peer 3: a Go server on the Centrifuge library (the core of Centrifugo; Debian's
// golang-github-centrifugal-centrifuge-dev, 0.15), relaying Postgres publishes the InsForge way,
// exactly as the Node peers do (see ../relay-core.mjs): one dedicated connection runs
// `LISTEN realtime_message`; the AFTER INSERT trigger of ../notify.sql sends each new message's
// id; the row is fetched by id (message and channel in one query) from a pool of 10 connections
// and published to the Centrifuge channel of the same name, serialised once into the same frame
// object the other servers send. Centrifuge's in-memory broker fans it out to the channel's
// subscribers; no history, no presence, no permission check (as the Node peers).
//
// Clients speak Centrifuge's JSON protocol at /connection/websocket: connect
// {"id":1,"params":{}}, subscribe {"id":N,"method":1,"params":{"channel":C}}; each delivery is a
// publication push {"result":{"channel":C,"data":{"data":<frame>}}}. Several replies and pushes
// may share one WebSocket frame, one per line.
//
// Built offline in GOPATH mode from Debian's packages by build.sh (never committed as a binary):
//
//	bench/peers/centrifuge/build.sh OUT && OUT --port 4103 --database-url postgres://postgres@127.0.0.1:5432/postgres
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/lib/pq"
)

// fetchSQL reads a notified message and its channel's enabled flag, as relay-core.mjs does.
const fetchSQL = `SELECT m.id::text, m.seq, m.channel, m.event, m.payload::text, m.sender_type,
       m.sender_id, m.created_at, c.enabled
  FROM realtime.messages m LEFT JOIN realtime.channels c ON c.id = m.channel_id
 WHERE m.id = $1`

type sender struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
}

// frame is the message object every server of the benchmark sends: the same fields, in the same
// order, as our relay's `message` frame and relay-core.mjs's messageFrame.
type frame struct {
	Type      string          `json:"type"`
	Channel   string          `json:"channel"`
	ID        string          `json:"id"`
	Cursor    string          `json:"cursor"`
	Event     string          `json:"event"`
	Payload   json.RawMessage `json:"payload"`
	Sender    sender          `json:"sender"`
	CreatedAt string          `json:"created_at"`
}

type stats struct {
	notified, delivered, missing, errors atomic.Int64
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 4103, "port to listen on")
	dbURL := flag.String("database-url", os.Getenv("DATABASE_URL"), "Postgres URL")
	poolSize := flag.Int("pool-size", 10, "connections fetching notified messages")
	flag.Parse()
	if *dbURL == "" {
		log.Fatal("--database-url is required")
	}
	dsn, err := withSSLDisabled(*dbURL)
	if err != nil {
		log.Fatalf("--database-url: %v", err)
	}

	cfg := centrifuge.DefaultConfig
	cfg.LogLevel = centrifuge.LogLevelError
	cfg.LogHandler = func(e centrifuge.LogEntry) { log.Printf("centrifuge: %s %v", e.Message, e.Fields) }
	node, err := centrifuge.New(cfg)
	if err != nil {
		log.Fatalf("centrifuge: %v", err)
	}
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		// Anonymous, like the load generator's subscribers of every other server.
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: ""}}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		log.Fatalf("centrifuge run: %v", err)
	}

	db, err := sql.Open("postgres", dsn)
	if err != nil {
		log.Fatalf("pool: %v", err)
	}
	db.SetMaxOpenConns(*poolSize)
	db.SetMaxIdleConns(*poolSize)
	if err := db.Ping(); err != nil {
		log.Fatalf("postgres: %v", err)
	}
	fetch, err := db.Prepare(fetchSQL)
	if err != nil {
		log.Fatalf("prepare: %v", err)
	}

	var st stats
	var listening atomic.Bool
	listener := pq.NewListener(dsn, 10*time.Millisecond, time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			log.Printf("listener: %v", err)
		}
	})
	if err := listener.Listen("realtime_message"); err != nil {
		log.Fatalf("LISTEN: %v", err)
	}
	go func() {
		for n := range listener.Notify {
			if n == nil || n.Extra == "" {
				continue // reconnected (a real server would catch up from the table here)
			}
			st.notified.Add(1)
			go relay(node, fetch, n.Extra, &st)
		}
	}()

	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		// Centrifugo's own setting for many connections: write buffers come from a pool
		// instead of one per connection.
		UseWriteBufferPool: true,
	}))
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if listening.Load() {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	addr := net.JoinHostPort(*host, fmt.Sprint(*port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("listen %s: %v", addr, err)
	}
	server := &http.Server{Handler: mux}
	go func() {
		if err := server.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Fatalf("serve: %v", err)
		}
	}()
	listening.Store(true)
	log.Printf("centrifuge peer listening on %s/connection/websocket", addr)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	log.Printf("stopping: notified %d, delivered %d, missing %d, errors %d",
		st.notified.Load(), st.delivered.Load(), st.missing.Load(), st.errors.Load())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = server.Shutdown(ctx)
	_ = node.Shutdown(ctx)
	_ = listener.Close()
}

// relay fetches one notified message and publishes its frame to the channel's subscribers.
func relay(node *centrifuge.Node, fetch *sql.Stmt, id string, st *stats) {
	var (
		f         frame
		seq       int64
		payload   string
		senderID  sql.NullString
		createdAt time.Time
		enabled   sql.NullBool
	)
	err := fetch.QueryRow(id).Scan(&f.ID, &seq, &f.Channel, &f.Event, &payload, &f.Sender.Type,
		&senderID, &createdAt, &enabled)
	if err == sql.ErrNoRows || (err == nil && enabled.Valid && !enabled.Bool) {
		st.missing.Add(1)
		return
	}
	if err != nil {
		st.errors.Add(1)
		log.Printf("message %s: %v", id, err)
		return
	}
	f.Type = "message"
	// The peers have no cursor; the seq stands in at the width of ours (32 hex digits), so the
	// frames stay the same size.
	f.Cursor = fmt.Sprintf("%032x", seq)
	f.Payload = json.RawMessage(payload)
	f.Sender.ID = senderID.String
	f.CreatedAt = createdAt.UTC().Format("2006-01-02T15:04:05.000Z")
	data, err := json.Marshal(&f)
	if err != nil {
		st.errors.Add(1)
		log.Printf("message %s: %v", id, err)
		return
	}
	audience := node.Hub().NumSubscribers(f.Channel)
	if audience == 0 {
		return
	}
	if _, err := node.Publish(f.Channel, data); err != nil {
		st.errors.Add(1)
		log.Printf("publish %s: %v", id, err)
		return
	}
	st.delivered.Add(int64(audience))
}

// withSSLDisabled adds sslmode=disable to a postgres:// URL that names no sslmode (lib/pq
// defaults to require; the benchmark cluster listens on loopback without TLS, like the other
// servers' connections to it).
func withSSLDisabled(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(u.Scheme, "postgres") {
		return "", fmt.Errorf("expected a postgres:// URL, got scheme %q", u.Scheme)
	}
	q := u.Query()
	if q.Get("sslmode") == "" {
		q.Set("sslmode", "disable")
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}
