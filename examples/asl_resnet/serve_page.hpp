// The page `asl_resnet serve` answers GET / with: self-contained (no external scripts, fonts or
// styles), plain JavaScript, readable on a phone. It posts the chosen or dropped file to
// /predict as multipart field "image" and shows the picture, the top-3 letters as bars and the
// time the prediction took.
#pragma once

namespace asl {

inline const char* serve_page() {
  return R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ASL alphabet — parallax</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  main { max-width: 34rem; margin: 0 auto; padding: 1rem; }
  h1 { font-size: 1.4rem; margin: 0.5rem 0 1rem; }
  #drop { display: block; border: 2px dashed #7a8599; border-radius: 12px; padding: 1.5rem;
          text-align: center;
          background: #fff; cursor: pointer; }
  #file { margin-top: 0.8rem; max-width: 100%; }
  #drop.over { border-color: #2a6bd1; background: #eaf1fd; }
  #preview { display: none; max-width: 100%; max-height: 16rem; margin: 1rem auto 0;
             border-radius: 8px; }
  .row { display: flex; align-items: center; gap: 0.5rem; margin: 0.4rem 0; }
  .label { width: 4.5rem; font-weight: 600; }
  .bar { flex: 1; background: #dde2ea; border-radius: 6px; height: 1.1rem; overflow: hidden; }
  .fill { background: #2a6bd1; height: 100%; }
  .pct { width: 3.5rem; text-align: right; font-variant-numeric: tabular-nums; }
  #answer { font-size: 3rem; font-weight: 700; text-align: center; margin: 1rem 0 0.2rem; }
  #status { color: #5b6577; text-align: center; min-height: 1.2rem; }
  .error { color: #b3261e !important; }
</style>
</head>
<body>
<main>
  <h1>American Sign Language alphabet</h1>
  <label id="drop" for="file">
    <div>Choose a photo of a hand sign, or drop it here</div>
    <input id="file" name="image" type="file" accept="image/*">
    <img id="preview" alt="the uploaded image">
  </label>
  <div id="answer"></div>
  <div id="status"></div>
  <div id="bars"></div>
</main>
<script>
const drop = document.getElementById('drop'), file = document.getElementById('file');
const preview = document.getElementById('preview'), statusLine = document.getElementById('status');
const answer = document.getElementById('answer'), bars = document.getElementById('bars');
function show(message, isError) {
  statusLine.textContent = message;
  statusLine.className = isError ? 'error' : '';
}
async function predict(picked) {
  if (!picked) return;
  preview.src = URL.createObjectURL(picked);
  preview.style.display = 'block';
  answer.textContent = ''; bars.innerHTML = ''; show('predicting…', false);
  const form = new FormData();
  form.append('image', picked);
  try {
    const reply = await fetch('/predict', { method: 'POST', body: form });
    const result = await reply.json();
    if (!reply.ok) { show(result.error || ('error ' + reply.status), true); return; }
    answer.textContent = result.top[0].label;
    for (const t of result.top) {
      const row = document.createElement('div');
      row.className = 'row';
      const pct = (100 * t.probability).toFixed(1);
      row.innerHTML = '<span class="label"></span><span class="bar"><span class="fill"></span>' +
                      '</span><span class="pct"></span>';
      row.querySelector('.label').textContent = t.label;
      row.querySelector('.fill').style.width = pct + '%';
      row.querySelector('.fill').style.display = 'block';
      row.querySelector('.pct').textContent = pct + '%';
      bars.appendChild(row);
    }
    show('predicted in ' + result.milliseconds.toFixed(1) + ' ms', false);
  } catch (error) {
    show('the server did not answer: ' + error, true);
  }
}
file.addEventListener('change', () => predict(file.files[0]));
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault(); drop.classList.remove('over');
  predict(e.dataTransfer.files[0]);
});
</script>
</body>
</html>
)html";
}

}  // namespace asl
