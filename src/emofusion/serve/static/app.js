// The page of `emofusion serve`: reads GET /model, shows the inputs the model uses, sends them
// to POST /predict and draws the class probabilities (and each modality's, for late fusion).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, recorded: null, recorder: null };

function apiKey() {
  return $("api-key").value.trim();
}

async function api(path, options = {}) {
  const headers = apiKey() ? { "X-API-Key": apiKey() } : {};
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || `the service answered ${response.status}`);
  }
  return body;
}

function showError(message) {
  $("error").textContent = message || "";
}

async function loadModel() {
  try {
    state.model = await api("model");
  } catch (error) {
    $("model-summary").textContent = "The model description could not be loaded.";
    showError(error.message);
    return;
  }
  showError("");
  const model = state.model;
  const modalities = model.modalities.map((m) => `${m.name} (${m.from})`).join(", ");
  $("model-summary").textContent =
    `Classes: ${model.labels.join(", ")}. System: ${model.protocol.system} ` +
    `(${model.protocol.model}) on ${modalities}.`;
  $("audio-section").hidden = !model.accepts.includes("audio");
  $("text-section").hidden = !model.accepts.includes("text");
  $("video-section").hidden = !model.accepts.includes("video");
  $("speaker-section").hidden = !(model.enrolment && model.enrolment.adapts_to_speakers);
  $("predict").disabled = model.accepts.length === 0;
  if (model.accepts.length === 0) {
    showError("This model takes feature arrays only: use POST /predict (see /docs).");
  }
}

// ---------------------------------------------------------------- recording as 16-bit WAV

function wavBlob(audioBuffer) {
  const channels = audioBuffer.numberOfChannels;
  const length = audioBuffer.length;
  const mono = new Float32Array(length);
  for (let c = 0; c < channels; c++) {
    const data = audioBuffer.getChannelData(c);
    for (let i = 0; i < length; i++) mono[i] += data[i] / channels;
  }
  const view = new DataView(new ArrayBuffer(44 + 2 * length));
  const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);
  view.setUint16(22, 1, true); view.setUint32(24, audioBuffer.sampleRate, true);
  view.setUint32(28, 2 * audioBuffer.sampleRate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * length, true);
  for (let i = 0; i < length; i++) {
    const s = Math.max(-1, Math.min(1, mono[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view], { type: "audio/wav" });
}

async function toggleRecording() {
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showError(`The microphone is not available (${error.message}); upload a file instead.`);
    return;
  }
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((track) => track.stop());
    state.recorder = null;
    $("record").textContent = "Record";
    const encoded = await new Blob(chunks, { type: recorder.mimeType }).arrayBuffer();
    const context = new AudioContext();
    state.recorded = wavBlob(await context.decodeAudioData(encoded));
    context.close();
    $("audio-file").value = "";
    $("audio-preview").src = URL.createObjectURL(state.recorded);
    $("audio-preview").hidden = false;
    $("recording-status").textContent =
      `recorded ${(state.recorded.size / 1024).toFixed(0)} KiB (WAV)`;
  };
  state.recorder = recorder;
  recorder.start();
  $("record").textContent = "Stop";
  $("recording-status").textContent = "recording…";
}

// ---------------------------------------------------------------- prediction and chart

function chart(container, probabilities) {
  container.replaceChildren();
  const top = Object.entries(probabilities).reduce((a, b) => (b[1] > a[1] ? b : a))[0];
  for (const [label, p] of Object.entries(probabilities)) {
    const row = document.createElement("div");
    row.className = label === top ? "row top" : "row";
    row.dataset.label = label;
    row.dataset.probability = String(p);
    const name = document.createElement("span");
    name.textContent = label;
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(bar);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(name, track, value);
    container.append(row);
  }
}

function showResult(result) {
  $("label").textContent = result.label;
  chart($("chart"), result.probabilities);
  const opinions = Object.entries(result.modalities || {});
  $("modalities").replaceChildren();
  for (const [modality, opinion] of opinions) {
    const box = document.createElement("div");
    box.className = "opinion";
    box.dataset.modality = modality;
    const title = document.createElement("h3");
    title.textContent = `${modality}: ${opinion.label}`;
    const bars = document.createElement("div");
    bars.className = "chart";
    chart(bars, opinion.probabilities);
    box.append(title, bars);
    $("modalities").append(box);
  }
  $("modalities-section").hidden = opinions.length === 0;
  const adaptation = result.adaptation;
  $("adaptation").hidden = !adaptation;
  if (adaptation) {
    $("adaptation").textContent = adaptation.source === "enrolment"
      ? `Adapted to ${adaptation.speaker} (${adaptation.enrolled_utterances} enrolled utterances).`
      : "Normalised with the training speakers' average " + (adaptation.speaker
        ? `(${adaptation.speaker} has ${adaptation.enrolled_utterances} enrolled utterances).`
        : "(no speaker given).");
  }
  $("result").hidden = false;
}

function inputForm() {
  const form = new FormData();
  const model = state.model;
  const audio = state.recorded || $("audio-file").files[0];
  if (model.accepts.includes("audio") && audio) form.append("audio", audio, audio.name || "recording.wav");
  const text = $("text").value;
  if (model.accepts.includes("text") && text.trim()) form.append("text", text);
  const video = $("video-file").files[0];
  if (model.accepts.includes("video") && video) form.append("video", video, video.name);
  if ([...form.keys()].length === 0) {
    showError(`Give the model its input: ${model.accepts.join(" and ")}.`);
    return null;
  }
  const speaker = $("speaker").value.trim();
  if (!$("speaker-section").hidden && speaker) form.append("speaker", speaker);
  return form;
}

async function send(path, button, show) {
  showError("");
  const form = inputForm();
  if (form === null) return;
  button.disabled = true;
  $("busy").hidden = false;
  try {
    show(await api(path, { method: "POST", body: form }));
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
    $("busy").hidden = true;
  }
}

function showEnrolment(answer) {
  $("enrol-status").textContent =
    `${answer.speaker}: ${answer.utterances} utterance(s) enrolled; ` +
    (answer.adapts ? "predictions adapt to this speaker"
                   : `adapts from ${answer.min_utterances}`);
}

async function predict(event) {
  event.preventDefault();
  await send("predict", $("predict"), showResult);
}

async function start() {
  $("form").addEventListener("submit", predict);
  $("enrol").addEventListener("click", () => {
    if (!$("speaker").value.trim()) {
      showError("Give the speaker's name or id to enrol an utterance.");
      return;
    }
    send("enrol", $("enrol"), showEnrolment);
  });
  $("record").addEventListener("click", toggleRecording);
  $("audio-file").addEventListener("change", () => {
    state.recorded = null;
    $("audio-preview").hidden = true;
    $("recording-status").textContent = "or record from the microphone";
  });
  $("use-key").addEventListener("click", loadModel);
  const health = await (await fetch("health")).json();
  $("key-section").hidden = !health.api_key_required;
  if (health.api_key_required && !apiKey()) {
    $("model-summary").textContent = "This service needs an API key.";
    return;
  }
  await loadModel();
}

start();
