// Helpers the supabase-js test files share (not a test file: node --test runs *.test.mjs).

/** Subscribes a supabase-js `channel`; resolves with the first final status its callback saw. */
export function subscribe(channel) {
  return new Promise((resolve) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED' || status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') resolve({ status, err });
    });
  });
}
