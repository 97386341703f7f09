//! realtime-relay: follows the realtime message log and fans it out over WebSocket.
