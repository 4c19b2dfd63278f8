"""Bilingual (Japanese/English) medical probe texts used by verification."""

from __future__ import annotations

TOKENIZER_PROBES: tuple[str, ...] = (
    "高血圧の第一選択薬にはACE阻害薬、ARB、カルシウム拮抗薬、サイアザイド系利尿薬がある。",
    "A 65-year-old man presents with crushing chest pain radiating to the left arm; "
    "ECG shows ST elevation in II, III and aVF.",
    "2型糖尿病患者のHbA1c目標値は、合併症予防のため7.0%未満とされることが多い。",
    "Metformin is contraindicated when eGFR < 30 mL/min/1.73m², because of the risk of lactic acidosis.",
    "急性膵炎では血清アミラーゼ・リパーゼが上昇し、CTで膵腫大を認める。ｱﾐﾗｰｾﾞ（半角）も確認。",
    "Patient: 田中太郎, 45歳, BP 158/96 mmHg, HR 88 bpm, SpO₂ 97% (room air).\n\tPlan: amlodipine 5 mg qd.",
    "  leading spaces, trailing spaces   \n\n\nand 3 newlines; emoji 💊🩺 and symbols ±µ°≤≥",
    "<|im_start|>system\nあなたは医療アシスタントです。<|im_end|>\n<|im_start|>user\nWhat is sepsis?<|im_end|>\n",
)

CONVERSION_PROBES: tuple[str, ...] = (
    "日本の医師国家試験：急性心筋梗塞で最初に上昇する心筋逸脱酵素はどれか。",
    "Question: Which vitamin deficiency causes Wernicke encephalopathy? Answer:",
    "The first-line treatment for anaphylaxis is intramuscular",
    "肺炎球菌ワクチンの定期接種の対象は、65歳の",
)

PERPLEXITY_TEXT = (
    "Hypertension is defined as a sustained elevation of blood pressure, usually 140/90 mmHg or higher "
    "measured in the clinic. It is a major risk factor for stroke, myocardial infarction, heart failure and "
    "chronic kidney disease. Lifestyle modification, including salt restriction, weight loss, regular exercise "
    "and moderation of alcohol intake, is recommended for all patients. When drug treatment is needed, "
    "first-line agents include ACE inhibitors, angiotensin receptor blockers, calcium channel blockers and "
    "thiazide diuretics.\n"
    "高血圧は、診察室血圧で140/90mmHg以上が持続する状態と定義される。脳卒中、心筋梗塞、心不全、慢性腎臓病の"
    "主要な危険因子である。すべての患者に減塩、減量、定期的な運動、節酒などの生活習慣の修正が推奨される。"
    "薬物療法が必要な場合、第一選択薬はACE阻害薬、アンジオテンシンII受容体拮抗薬、カルシウム拮抗薬、"
    "サイアザイド系利尿薬である。\n"
    "Type 2 diabetes mellitus results from insulin resistance combined with relative insulin deficiency. "
    "Metformin remains the usual initial drug unless contraindicated, and SGLT2 inhibitors or GLP-1 receptor "
    "agonists are preferred in patients with cardiovascular or renal disease.\n"
    "2型糖尿病はインスリン抵抗性とインスリン分泌低下により生じる。禁忌がなければメトホルミンが初期治療薬として"
    "用いられ、心血管疾患や腎疾患を有する患者ではSGLT2阻害薬やGLP-1受容体作動薬が推奨される。"
)
