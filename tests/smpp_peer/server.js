#!/usr/bin/env node
// A real SMPP 3.4 peer (an "SMSC") for textdesk's SMPP adapter tests, built on the npm `smpp`
// package (MIT). It is a test tool, not a product: loopback only, state in memory.
//
//   node tests/smpp_peer/server.js [--port N] [--control-port M] [--system-id ID] [--password PW]
//   (or SMPP_PEER_PORT, SMPP_PEER_CONTROL_PORT, SMPP_PEER_SYSTEM_ID, SMPP_PEER_PASSWORD)
//
// Port 0 (the default) picks a free port; once both servers listen it prints one JSON line
// {"event": "listening", "smpp_port": ..., "control_port": ...} on stdout. Every later event is
// also a JSON line on stdout, and kept in memory for the control channel.
//
// SMPP behaviour:
// - bind_transceiver with the configured system_id/password is accepted; a wrong password gets
//   ESME_RINVPASWD (0x0E), an unknown system_id ESME_RINVSYSID (0x0F), and the connection closes.
// - submit_sm is answered with a message_id (config `resp_id_format`: "hex" or "decimal") unless
//   the destination ends with one of the configured suffixes:
//     throttle_suffix (0429) -> ESME_RTHROTTLED, invalid_suffix (0404) -> ESME_RINVDSTADR,
//     syserr_suffix (0008) -> ESME_RSYSERR, silent_suffix (0999) -> no answer at all,
//     slow_suffix (0998) -> the answer (and the receipt after it) only after `slow_resp_ms`, for
//     the parts listed in `slow_parts` (all when null).
// - each accepted submit_sm gets a delivery receipt (deliver_sm, esm_class 0x04) after
//   `receipt_delay_ms`, with the id written per `receipt_id_format` in the text and, when
//   `receipt_tlvs`, in the receipted_message_id / message_state TLVs. The stat is DELIVRD unless
//   the destination ends with a key of `stat_by_suffix`. For `early_receipt_suffix` (0666) the
//   receipt is written BEFORE the submit_sm_resp; for `no_receipt_suffix` (0000) none is sent.
// - enquire_link is answered (unless `answer_enquire_link` is false); unbind is answered and the
//   connection closed.
// - config `down: true` is an outage: every new connection is closed at once (POST /drop ends
//   the existing ones). config `password` replaces the password binds must give, so a test can
//   refuse our credentials and then "fix them at the SMSC".
//
// Control channel, HTTP on 127.0.0.1:
//   GET  /events          every event so far (JSON array); submit_sm events carry the parsed
//                         fields and the exact short_message bytes as hex
//   GET  /sessions        {"bound": n}
//   POST /reset           forget events, restore the default config
//   POST /config          merge a JSON object into the config
//   POST /deliver         send a deliver_sm to every bound session. Body: {source_addr,
//                         destination_addr, source_addr_ton?, dest_addr_ton?, esm_class?,
//                         data_coding?, short_message_hex, tlvs?: {sar_msg_ref_num: 1, ...},
//                         sequence_number?, repeat?}: `repeat` sends the very same PDU (same
//                         sequence number) that many times, as an SMSC re-delivering it does
//   POST /enquire_link    send enquire_link to every bound session
//   POST /drop            destroy every connection (to test reconnects)
'use strict';

const http = require('http');
const smpp = require('smpp');

const ESME_ROK = 0x00;
const ESME_RINVBNDSTS = 0x04;
const ESME_RSYSERR = 0x08;
const ESME_RINVDSTADR = 0x0b;
const ESME_RINVPASWD = 0x0e;
const ESME_RINVSYSID = 0x0f;
const ESME_RTHROTTLED = 0x58;

const MESSAGE_STATES = { DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8 };

function option(name, envName, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  if (index !== -1 && index + 1 < process.argv.length) return process.argv[index + 1];
  return process.env[envName] !== undefined ? process.env[envName] : fallback;
}

const SMPP_PORT = Number(option('port', 'SMPP_PEER_PORT', '0'));
const CONTROL_PORT = Number(option('control-port', 'SMPP_PEER_CONTROL_PORT', '0'));
const SYSTEM_ID = option('system-id', 'SMPP_PEER_SYSTEM_ID', 'textdesk');
const PASSWORD = option('password', 'SMPP_PEER_PASSWORD', 'secret');

function defaultConfig() {
  return {
    resp_id_format: 'hex',
    receipt_id_format: 'hex',
    receipt_tlvs: true,
    receipt_delay_ms: 20,
    throttle_suffix: '0429',
    invalid_suffix: '0404',
    syserr_suffix: '0008',
    silent_suffix: '0999',
    early_receipt_suffix: '0666',
    no_receipt_suffix: '0000',
    slow_suffix: '0998',
    slow_resp_ms: 1500,
    slow_parts: null,
    stat_by_suffix: { '0500': 'UNDELIV', '0501': 'EXPIRED', '0502': 'REJECTD', '0503': 'ACCEPTD' },
    answer_enquire_link: true,
  };
}

let config = defaultConfig();
let events = [];
let nextId = 0x12345678;
const bound = new Set();

function record(event) {
  const entry = Object.assign({ time: Date.now() }, event);
  events.push(entry);
  process.stdout.write(JSON.stringify(entry) + '\n');
}

// Keep each received PDU's raw bytes: the library decodes short_message by data_coding, and
// the tests must see exactly the octets the adapter sent.
const originalFromBuffer = smpp.PDU.prototype.fromBuffer;
smpp.PDU.prototype.fromBuffer = function (buffer) {
  Object.defineProperty(this, 'raw', { value: Buffer.from(buffer), enumerable: false });
  return originalFromBuffer.call(this, buffer);
};

function cstring(buffer, offset) {
  const end = buffer.indexOf(0, offset);
  const stop = end === -1 ? buffer.length : end;
  return [buffer.toString('latin1', offset, stop), stop + 1];
}

// submit_sm body, SMPP 3.4 section 4.4.1, read by hand from the raw PDU.
function parseSubmitSm(raw) {
  const out = {};
  let offset = 16;
  let value;
  [out.service_type, offset] = cstring(raw, offset);
  out.source_addr_ton = raw[offset++];
  out.source_addr_npi = raw[offset++];
  [out.source_addr, offset] = cstring(raw, offset);
  out.dest_addr_ton = raw[offset++];
  out.dest_addr_npi = raw[offset++];
  [out.destination_addr, offset] = cstring(raw, offset);
  out.esm_class = raw[offset++];
  out.protocol_id = raw[offset++];
  out.priority_flag = raw[offset++];
  [out.schedule_delivery_time, offset] = cstring(raw, offset);
  [out.validity_period, offset] = cstring(raw, offset);
  out.registered_delivery = raw[offset++];
  out.replace_if_present_flag = raw[offset++];
  out.data_coding = raw[offset++];
  out.sm_default_msg_id = raw[offset++];
  const length = raw[offset++];
  value = raw.subarray(offset, offset + length);
  out.sm_length = length;
  out.short_message_hex = value.toString('hex');
  offset += length;
  out.tlvs = {};
  while (offset + 4 <= raw.length) {
    const tag = raw.readUInt16BE(offset);
    const size = raw.readUInt16BE(offset + 2);
    out.tlvs['0x' + tag.toString(16).padStart(4, '0')] = raw.subarray(offset + 4, offset + 4 + size).toString('hex');
    offset += 4 + size;
  }
  return out;
}

function formatId(n, format) {
  return format === 'decimal' ? String(n) : n.toString(16).toUpperCase();
}

function smppDate(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return (
    pad(date.getUTCFullYear() % 100) + pad(date.getUTCMonth() + 1) + pad(date.getUTCDate()) +
    pad(date.getUTCHours()) + pad(date.getUTCMinutes())
  );
}

function endsWith(address, suffix) {
  return Boolean(suffix) && address.endsWith(suffix);
}

function receiptFor(submit, idNumber) {
  let stat = 'DELIVRD';
  for (const [suffix, value] of Object.entries(config.stat_by_suffix || {})) {
    if (endsWith(submit.destination_addr, suffix)) stat = value;
  }
  const id = formatId(idNumber, config.receipt_id_format);
  const now = smppDate(new Date());
  let userData = Buffer.from(submit.short_message_hex, 'hex');
  if (submit.esm_class & 0x40 && userData.length) userData = userData.subarray(userData[0] + 1);
  const preview = userData.subarray(0, 20).toString('latin1').replace(/[^\x20-\x7e]/g, '?');
  const err = stat === 'DELIVRD' ? '000' : '001';
  const text =
    `id:${id} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} submit date:${now} ` +
    `done date:${now} stat:${stat} err:${err} text:${preview}`;
  const options = {
    source_addr_ton: submit.dest_addr_ton,
    source_addr_npi: submit.dest_addr_npi,
    source_addr: submit.destination_addr,
    dest_addr_ton: submit.source_addr_ton,
    dest_addr_npi: submit.source_addr_npi,
    destination_addr: submit.source_addr,
    esm_class: 0x04,
    data_coding: 0,
    short_message: Buffer.from(text, 'latin1'),
  };
  if (config.receipt_tlvs) {
    options.receipted_message_id = id;
    options.message_state = MESSAGE_STATES[stat] || 7;
  }
  return { options, id, stat };
}

function sendDeliverSm(session, options, kind) {
  session.deliver_sm(options, (resp) => {
    record({ event: 'deliver_sm_resp', kind, status: resp.command_status, sequence: resp.sequence_number });
  });
}

function onSubmitSm(session, pdu) {
  const submit = parseSubmitSm(pdu.raw);
  const dest = submit.destination_addr;
  let status = ESME_ROK;
  if (!bound.has(session)) status = ESME_RINVBNDSTS;
  else if (endsWith(dest, config.throttle_suffix)) status = ESME_RTHROTTLED;
  else if (endsWith(dest, config.invalid_suffix)) status = ESME_RINVDSTADR;
  else if (endsWith(dest, config.syserr_suffix)) status = ESME_RSYSERR;
  const silent = status === ESME_ROK && endsWith(dest, config.silent_suffix);
  const idNumber = nextId++;
  const messageId = status === ESME_ROK && !silent ? formatId(idNumber, config.resp_id_format) : null;
  record(Object.assign({ event: 'submit_sm', sequence: pdu.sequence_number, status, message_id: messageId }, submit));
  if (silent) return;
  const slow = endsWith(dest, config.slow_suffix) && isSlowPart(submit);
  if (slow) record({ event: 'slow_answer', sequence: pdu.sequence_number, message_id: messageId });
  if (status !== ESME_ROK) {
    const refuse = () => session.send(pdu.response({ command_status: status }));
    if (slow) setTimeout(refuse, config.slow_resp_ms);
    else refuse();
    return;
  }
  const response = pdu.response({ message_id: messageId });
  if (endsWith(dest, config.no_receipt_suffix)) {
    session.send(response);
    return;
  }
  const receipt = receiptFor(submit, idNumber);
  if (endsWith(dest, config.early_receipt_suffix)) {
    // The race: the receipt is on the wire before the submit_sm_resp.
    record({ event: 'receipt', id: receipt.id, stat: receipt.stat, early: true });
    sendDeliverSm(session, receipt.options, 'receipt');
    session.send(response);
    return;
  }
  const answer = () => {
    if (!bound.has(session)) return;
    session.send(response);
    setTimeout(() => {
      if (!bound.has(session)) return;
      record({ event: 'receipt', id: receipt.id, stat: receipt.stat, early: false });
      sendDeliverSm(session, receipt.options, 'receipt');
    }, config.receipt_delay_ms);
  };
  if (slow) setTimeout(answer, config.slow_resp_ms);
  else answer();
}

// The part number of a concatenated submit (UDH 05 00 03 ref total seq), 1 for a single one.
function partNumber(submit) {
  const data = Buffer.from(submit.short_message_hex, 'hex');
  if (submit.esm_class & 0x40 && data.length >= 6 && data[1] === 0x00) return data[5];
  return 1;
}

function isSlowPart(submit) {
  return !config.slow_parts || config.slow_parts.includes(partNumber(submit));
}

const server = smpp.createServer((session) => {
  if (config.down) {
    record({ event: 'refused_connection' });
    session.destroy();
    return;
  }
  session.repeated = new Set(); // sequence numbers sent by /deliver with a fixed sequence
  session.on('deliver_sm_resp', (pdu) => {
    if (session.repeated.has(pdu.sequence_number)) {
      record({ event: 'deliver_sm_resp', kind: 'repeat', status: pdu.command_status, sequence: pdu.sequence_number });
    }
  });
  session.on('error', (error) => record({ event: 'session_error', message: String(error && error.message) }));
  session.on('close', () => {
    bound.delete(session);
    record({ event: 'close' });
  });
  session.on('bind_transceiver', (pdu) => {
    let status = ESME_ROK;
    if (pdu.system_id !== SYSTEM_ID) status = ESME_RINVSYSID;
    else if (pdu.password !== (config.password === undefined ? PASSWORD : config.password)) status = ESME_RINVPASWD;
    record({ event: 'bind', system_id: pdu.system_id, system_type: pdu.system_type, status });
    if (status !== ESME_ROK) {
      session.send(pdu.response({ command_status: status }), () => session.close());
      return;
    }
    bound.add(session);
    session.send(pdu.response({ system_id: 'textdesk-peer' }));
  });
  session.on('submit_sm', (pdu) => onSubmitSm(session, pdu));
  session.on('enquire_link', (pdu) => {
    record({ event: 'enquire_link', sequence: pdu.sequence_number });
    if (config.answer_enquire_link) session.send(pdu.response());
  });
  session.on('enquire_link_resp', (pdu) => record({ event: 'enquire_link_resp', sequence: pdu.sequence_number }));
  session.on('unbind', (pdu) => {
    record({ event: 'unbind' });
    bound.delete(session);
    session.send(pdu.response(), () => session.close());
  });
});

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text ? JSON.parse(text) : {});
      } catch (error) {
        reject(error);
      }
    });
    request.on('error', reject);
  });
}

const routes = {
  'GET /events': () => events,
  'GET /sessions': () => ({ bound: bound.size }),
  'POST /reset': () => {
    events = [];
    config = defaultConfig();
    return { ok: true };
  },
  'POST /config': (body) => {
    config = Object.assign(config, body);
    return config;
  },
  'POST /deliver': (body) => {
    const options = {
      source_addr_ton: body.source_addr_ton === undefined ? 1 : body.source_addr_ton,
      source_addr_npi: 1,
      source_addr: body.source_addr,
      dest_addr_ton: body.dest_addr_ton === undefined ? 1 : body.dest_addr_ton,
      dest_addr_npi: 1,
      destination_addr: body.destination_addr,
      esm_class: body.esm_class || 0,
      data_coding: body.data_coding || 0,
      short_message: Buffer.from(body.short_message_hex || '', 'hex'),
    };
    Object.assign(options, body.tlvs || {});
    const repeat = body.repeat || 1;
    for (const session of bound) {
      if (body.sequence_number === undefined && repeat === 1) {
        sendDeliverSm(session, options, 'inbound');
        continue;
      }
      const sequence = body.sequence_number === undefined ? ++session.sequence : body.sequence_number;
      session.repeated.add(sequence);
      for (let i = 0; i < repeat; i++) {
        const pdu = new smpp.PDU('deliver_sm', Object.assign({ sequence_number: sequence }, options));
        session.send(pdu);
      }
    }
    record({ event: 'deliver_sm', sessions: bound.size, repeat, short_message_hex: body.short_message_hex });
    return { sent: bound.size };
  },
  'POST /enquire_link': () => {
    for (const session of bound) session.enquire_link();
    return { sent: bound.size };
  },
  'POST /drop': () => {
    const count = bound.size;
    for (const session of server.sessions.slice()) session.destroy();
    bound.clear();
    record({ event: 'drop', sessions: count });
    return { dropped: count };
  },
};

const control = http.createServer(async (request, response) => {
  const route = routes[`${request.method} ${request.url.split('?')[0]}`];
  let status = 200;
  let result;
  if (!route) {
    status = 404;
    result = { error: 'no such route' };
  } else {
    try {
      result = route(await readBody(request));
    } catch (error) {
      status = 400;
      result = { error: String(error && error.message) };
    }
  }
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(result));
});

server.listen(SMPP_PORT, '127.0.0.1', () => {
  control.listen(CONTROL_PORT, '127.0.0.1', () => {
    record({ event: 'listening', smpp_port: server.address().port, control_port: control.address().port });
  });
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
