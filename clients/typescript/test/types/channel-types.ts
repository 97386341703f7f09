// Compile-time checks of typed channels (`npm run typecheck`, part of `make test-js`): a wrong
// payload or event name must not compile. Never run, only type-checked.
import { createClient, type Message, type PresenceMember } from '../../src/index.js';

type Chat = { message: { text: string }; typing: { on: boolean } };
declare const WebSocketImpl: any;
const client = createClient({ url: 'ws://localhost:4000', WebSocket: WebSocketImpl });
const chat = client.channel<Chat, { name: string }>('chat:1');

chat.on('message', (m) => {
  const text: string = m.payload.text;
  const event: 'message' = m.event;
  void text, event;
});
chat.on('*', (m: Message<Chat[keyof Chat]>) => void m);
chat.on('presence:join', (e) => {
  const name: string = e.member.state.name;
  void name;
});
chat.on('reset', (e) => void e.cursor);
void chat.publish('message', { text: 'hi' });
void chat.publish('typing', { on: true }, { persist: false });
const members: PresenceMember<{ name: string }>[] = chat.presence();
void members;
void chat.track({ name: 'Ada' });

// @ts-expect-error: payload of 'message' is {text: string}
void chat.publish('message', { txt: 'hi' });
// @ts-expect-error: no such event in the map
void chat.publish('nope', {});
chat.on('message', (m) => {
  // @ts-expect-error: payload has no 'n'
  void m.payload.n;
});
// @ts-expect-error: presence state is {name: string}
void chat.track({ nom: 'Ada' });
