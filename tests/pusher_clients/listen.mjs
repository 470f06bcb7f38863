// Drives the real pusher-js (or laravel-echo on top of it) against drylocal and reports what it sees,
// one JSON object per line on stdout. Argument: a JSON object
// {port, appKey, apiKey, channel, client: "pusher-js" | "echo"}; "channel" is the private channel's
// name without "private-". It runs until stdin closes.
import Pusher from "pusher-js";
import Echo from "laravel-echo";

const options = JSON.parse(process.argv[2]);
const report = (record) => process.stdout.write(JSON.stringify(record) + "\n");
const connection = {
  cluster: "mt1",
  wsHost: "127.0.0.1",
  wsPort: options.port,
  wssPort: options.port,
  forceTLS: false,
  enabledTransports: ["ws"],
};
const authEndpoint = `http://127.0.0.1:${options.port}/broadcasting/auth`;
const headers = { Authorization: `Bearer ${options.apiKey}` };

let pusher;
if (options.client === "echo") {
  const echo = new Echo({ broadcaster: "pusher", key: options.appKey, Pusher, ...connection, authEndpoint, auth: { headers } });
  pusher = echo.connector.pusher;
  echo
    .private(options.channel)
    .subscribed(() => report({ type: "subscribed" }))
    .error((error) => report({ type: "subscription_error", status: error.status }))
    .listen(".request.status.updated", (data) => report({ type: "event", data }));
} else {
  pusher = new Pusher(options.appKey, { ...connection, channelAuthorization: { endpoint: authEndpoint, transport: "ajax", headers } });
  const channel = pusher.subscribe(`private-${options.channel}`);
  channel.bind("pusher:subscription_succeeded", () => report({ type: "subscribed" }));
  channel.bind("pusher:subscription_error", (error) => report({ type: "subscription_error", status: error.status }));
  channel.bind("request.status.updated", (data) => report({ type: "event", data }));
}
pusher.connection.bind("state_change", (states) => report({ type: "state", current: states.current }));
pusher.connection.bind("error", (error) => report({ type: "error", code: error?.data?.code ?? null }));

process.stdin.resume();
process.stdin.on("end", () => {
  pusher.disconnect();
  process.exit(0);
});
